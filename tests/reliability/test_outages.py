"""Outside systems failing mid-run: the run fails with a clear error or retries, and once the
service is back the work completes with nothing lost and nothing duplicated."""

import threading
import time

import dagster as dg
import pandas as pd
import psycopg
import pytest

from bscore_assets.operations import Operations, local_instance
from bscore_assets.settings import Settings
from scoring.simulate import simulate_readings
from tests.assets.conftest import SCORE_START, TRAIN_START, land
from tests.conftest import (pg_admin_url, postgres_database, sqlalchemy_postgres_url, start_azurite,
                            stop_azurite)

pytestmark = pytest.mark.slow  # whole platforms through outages and retries

HOUR = pd.Timedelta(hours=1)
DEVICES, SENSORS = 20, 5


def make_platform() -> Operations:
    from definitions import build_defs

    settings = Settings.from_env()
    return Operations(settings, build_defs(settings), local_instance(settings))


def prepare(platform: Operations) -> None:
    land(platform, simulate_readings(DEVICES, SENSORS, TRAIN_START, 1, 0.0, interval_seconds=5, seed=1))
    land(platform, simulate_readings(DEVICES, SENSORS, SCORE_START, 1, 0.01, interval_seconds=5, seed=2))
    platform.train(None, TRAIN_START, TRAIN_START)


def retry_events(platform: Operations) -> list:
    instance = platform.instance
    return [entry for run in instance.get_runs()
            for entry in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_UP_FOR_RETRY)]


def assert_scored_once(platform: Operations) -> None:
    rows = platform.resources["sql"].read_predictions(SCORE_START, SCORE_START + HOUR)
    assert len(rows) == DEVICES * SENSORS * 720
    assert not rows.duplicated(["device", "sensor", "ts"]).any()


@pytest.fixture
def own_database(bscore_home, monkeypatch):
    with postgres_database("bscore_outage") as name:
        monkeypatch.setenv("BSCORE_SQL_URL", sqlalchemy_postgres_url(name))
        yield name


def test_database_connections_dropped_mid_run_are_retried(own_database):
    platform = make_platform()
    prepare(platform)
    stop = threading.Event()

    def drop_connections():
        with psycopg.connect(pg_admin_url(), autocommit=True) as admin:
            deadline = time.monotonic() + 1.5
            while time.monotonic() < deadline and not stop.is_set():
                admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                              "WHERE datname = %s AND pid <> pg_backend_pid()", (own_database,))
                time.sleep(0.02)

    dropper = threading.Thread(target=drop_connections)
    dropper.start()
    try:
        platform.score(SCORE_START, SCORE_START)
    finally:
        stop.set()
        dropper.join()
    retries = retry_events(platform)
    assert retries, "no step was retried: the connections were not dropped mid-run"
    assert assert_scored_once(platform) is None


def test_blob_store_down_fails_clearly_then_completes_when_back(bscore_home, tmp_path, monkeypatch):
    azurite = start_azurite(tmp_path / "azurite")
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite.connection_string)
    monkeypatch.setenv("BSCORE_BLOB_URL", f"az://{azurite.new_container_name()}")
    platform = make_platform()
    try:
        prepare(platform)
        stop_azurite(azurite)
        with pytest.raises(RuntimeError) as failure:
            platform.score(SCORE_START, SCORE_START)  # down for the whole run: every retry fails
        assert "127.0.0.1" in str(failure.value) or "unreachable" in str(failure.value)
        assert len(retry_events(platform)) >= 1
        azurite = start_azurite(tmp_path / "azurite", port=azurite.port)
        platform.score(SCORE_START, SCORE_START)
        assert_scored_once(platform)

        stop_azurite(azurite)
        restart = threading.Timer(3.0, lambda: restarted.append(start_azurite(tmp_path / "azurite", port=azurite.port)))
        restarted: list = []
        restart.start()
        platform.score(SCORE_START, SCORE_START)  # down mid-run, back before the retries run out
        restart.join()
        azurite = restarted[0]
        assert_scored_once(platform)
    finally:
        stop_azurite(azurite)
