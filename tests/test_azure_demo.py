"""``bscore demo`` on the Azure twins: blobs on Azurite (``az://``), rows in PostgreSQL."""

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from bscore_assets.storage import read_prediction_partition
from resources.azure_blob import AzureBlobStore
from tests.conftest import postgres_database, sqlalchemy_postgres_url

pytestmark = pytest.mark.slow  # the demo on Azurite, in subprocesses

DEVICES, SENSORS = 2, 2
WINDOWS_PER_HOUR = 720


@pytest.fixture
def demo_database():
    """A database of the demo's own: the dynamic partitions come from what SQL holds."""
    with postgres_database("bscore_demo") as name:
        yield sqlalchemy_postgres_url(name)


def test_demo_on_azurite_and_postgres_leaves_blobs_and_rows(azurite, demo_database, tmp_path, monkeypatch):
    container = azurite.new_container_name()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BSCORE_", "AZURE_", "EVENTHUB_"))}
    env.update(BSCORE_HOME=str(tmp_path / "home"), BSCORE_BLOB_URL=f"az://{container}/demo",
               BSCORE_SQL_URL=demo_database, AZURE_STORAGE_CONNECTION_STRING=azurite.connection_string)
    bscore = Path(sys.executable).with_name("bscore")
    done = subprocess.run([str(bscore), "demo", "--devices", str(DEVICES), "--sensors", str(SENSORS),
                           "--train-hours", "1", "--score-hours", "1"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"az://{container}/demo/" in done.stdout and "postgresql+psycopg" in done.stdout
    assert "AccountKey" not in done.stdout + done.stderr

    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite.connection_string)
    blob = AzureBlobStore.from_url(f"az://{container}/demo")
    raw, models, preds = blob.list("raw/"), blob.list("models/"), blob.list("predictions/")
    engine = sa.create_engine(demo_database)
    raw_hours = sorted({key.split("/")[1] for key in raw})
    assert len(raw_hours) == 2, raw
    for hour in raw_hours:
        readings = [blob.read_parquet(k) for k in raw if k.startswith(f"raw/{hour}/") and k.endswith(".parquet")]
        assert sum(len(part) for part in readings) > 0
    assert len(models) >= DEVICES
    manifests = [key for key in preds if key.endswith("/_manifest.json")]
    assert len(manifests) == SENSORS  # one scored hour x each sensor
    for key in manifests:
        hour = pd.Timestamp(key.split("/")[1])
        sensor = key.split("sensor=")[1].split("/")[0]
        stored = read_prediction_partition(blob, hour, sensor)
        assert len(stored) == DEVICES * WINDOWS_PER_HOUR
        with engine.connect() as conn:
            rows = pd.read_sql(sa.text("SELECT device, ts, score FROM predictions WHERE sensor = :s AND ts > :a "
                                       "AND ts <= :b ORDER BY device, ts"),
                               conn, params={"s": sensor, "a": hour, "b": hour + pd.Timedelta(hours=1)})
        expected = stored.sort_values(["device", "ts"]).reset_index(drop=True)
        assert rows["device"].tolist() == expected["device"].tolist()
        assert (rows["score"] - expected["score"]).abs().max() < 1e-9
    with engine.connect() as conn:
        windows = conn.execute(sa.text("SELECT count(*) FROM sensor_values WHERE ts > :a AND ts <= :b"),
                               {"a": pd.Timestamp(raw_hours[0]),
                                "b": pd.Timestamp(raw_hours[-1]) + pd.Timedelta(hours=1)}).scalar_one()
    assert windows == 2 * DEVICES * SENSORS * WINDOWS_PER_HOUR
    engine.dispose()
