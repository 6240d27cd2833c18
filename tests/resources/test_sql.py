"""SqlStore on SQLite and on the local PostgreSQL: replace-by-hours, keys, bulk paths, schema.

The Azure SQL path (``mssql+pyodbc``) has no server here: its DDL and statements are compiled
for the mssql dialect instead.
"""

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import mssql
from sqlalchemy.dialects.mssql.pyodbc import MSDialect_pyodbc
from sqlalchemy.schema import CreateTable

from resources.sql import SqlStore, engine_options, predictions, sensor_values

H0 = pd.Timestamp("2026-01-01T00:00")
H1 = H0 + pd.Timedelta(hours=1)
H2 = H0 + pd.Timedelta(hours=2)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path) -> SqlStore:
    if request.param == "sqlite":
        yield SqlStore(url=f"sqlite:///{tmp_path / 'bscore.db'}")
        return
    store = SqlStore(url=request.getfixturevalue("postgres_url"))
    with store.engine.begin() as conn:  # the session's database is shared by the tests
        conn.execute(sa.text("TRUNCATE sensor_values, predictions, prediction_staging"))
    yield store
    with store.engine.begin() as conn:
        conn.execute(sa.text("TRUNCATE sensor_values, predictions, prediction_staging"))


def windows(hour: pd.Timestamp, devices=("d1", "d2"), sensors=("s1", "s2"), per_hour=720, seed=0) -> pd.DataFrame:
    """Every 5-second window of the hour: ends in ``(hour, hour + 1h]``."""
    rng = np.random.default_rng(seed)
    ends = hour + pd.to_timedelta(np.arange(1, per_hour + 1) * 3600 // per_hour, unit="s")
    index = pd.MultiIndex.from_product([devices, sensors, ends], names=["device", "sensor", "ts"])
    frame = index.to_frame(index=False)
    frame["ts"] = frame["ts"].astype("datetime64[ns]")  # what the store reads back
    frame["value"] = rng.normal(size=len(frame))
    frame["readings"] = rng.integers(1, 10, size=len(frame))
    frame["low"] = frame["value"] - rng.random(len(frame))
    frame["high"] = frame["value"] + rng.random(len(frame))
    frame.loc[::7, ["low", "high"]] = np.nan  # windows stored before extremes were recorded: NULL
    return frame[["ts", "device", "sensor", "value", "readings", "low", "high"]]


def scored(frame: pd.DataFrame, version="v1") -> pd.DataFrame:
    out = frame[["ts", "device", "sensor", "value"]].copy()
    out["score"] = out["value"] * 2
    out["is_anomaly"] = out["value"] > 1
    out["model_version"] = version
    return out


def sort(frame):
    return frame.sort_values(["device", "sensor", "ts"]).reset_index(drop=True)


def test_round_trip_keeps_values_and_types(store):
    frame = windows(H0)
    store.replace_sensor_values(frame, H0, H1)
    read = store.read_sensor_values(H0, H1)
    pd.testing.assert_frame_equal(read, sort(frame), check_exact=True)
    preds = scored(frame)
    store.replace_predictions(preds, H0, H1, ["s1", "s2"])
    pd.testing.assert_frame_equal(store.read_predictions(H0, H1), sort(preds), check_exact=True)


def test_rerun_replaces_the_hour_and_never_duplicates(store):
    store.replace_sensor_values(windows(H0, seed=1), H0, H1)
    store.replace_sensor_values(windows(H1, seed=1), H1, H2)
    again = windows(H0, devices=("d1",), seed=2)  # the re-run has fewer rows and new values
    store.replace_sensor_values(again, H0, H1)
    store.replace_sensor_values(again, H0, H1)
    pd.testing.assert_frame_equal(store.read_sensor_values(H0, H1), sort(again))
    pd.testing.assert_frame_equal(store.read_sensor_values(H1, H2), sort(windows(H1, seed=1)))
    later = windows(H1, seed=1)
    assert store.window_stats(H0, H2) == (len(again) + len(later), int(again["readings"].sum() + later["readings"].sum()))
    # The window ending on the hour belongs to the hour before it.
    assert store.read_sensor_values(H0, H1)["ts"].max() == H1
    assert store.distinct("device") == ["d1", "d2"]


def test_predictions_replace_only_the_given_sensors(store):
    store.replace_predictions(scored(windows(H0)), H0, H1, ["s1", "s2"])
    s1_again = scored(windows(H0, sensors=("s1",), seed=3), version="v2")
    store.replace_predictions(s1_again, H0, H1, ["s1"])
    read = store.read_predictions(H0, H1)
    assert set(read.loc[read["sensor"] == "s1", "model_version"]) == {"v2"}
    assert set(read.loc[read["sensor"] == "s2", "model_version"]) == {"v1"}
    assert len(read) == len(windows(H0))
    store.replace_predictions(pd.DataFrame(), H0, H1, ["s2"])  # an hour with nothing scored
    assert set(store.read_predictions(H0, H1)["sensor"]) == {"s1"}


def test_rows_outside_the_hours_are_refused_and_nothing_changes(store):
    store.replace_sensor_values(windows(H0), H0, H1)
    spills_over = pd.concat([windows(H0, devices=("d9",)), windows(H1, devices=("d9",))])
    with pytest.raises(ValueError, match="1440 of 2880 rows for sensor_values"):
        store.replace_sensor_values(spills_over, H0, H1)
    with pytest.raises(ValueError, match="rows for predictions"):
        store.replace_predictions(scored(windows(H0)), H0, H1, ["s1"])
    pd.testing.assert_frame_equal(store.read_sensor_values(H0, H1), sort(windows(H0)))


def test_a_failed_write_leaves_the_old_rows(store):
    store.replace_sensor_values(windows(H0), H0, H1)
    doubled = pd.concat([windows(H0, seed=5), windows(H0, devices=("d1",), seed=5)])
    with pytest.raises(sa.exc.IntegrityError):
        store.replace_sensor_values(doubled, H0, H1)
    pd.testing.assert_frame_equal(store.read_sensor_values(H0, H1), sort(windows(H0)))


def test_a_foreign_table_of_the_same_name_is_reported(tmp_path):
    url = f"sqlite:///{tmp_path / 'legacy.db'}"
    with sa.create_engine(url).begin() as conn:
        conn.execute(sa.text("CREATE TABLE sensor_values (ts TEXT, device TEXT, tag TEXT, value REAL)"))
    with pytest.raises(RuntimeError, match=r"sensor_values does not match .*'sensor', 'readings'"):
        SqlStore(url=url).engine


def test_azure_sql_ddl_compiles_for_mssql():
    ddl = {t.name: str(CreateTable(t).compile(dialect=mssql.dialect())) for t in (sensor_values, predictions)}
    for text in ddl.values():
        assert "ts DATETIME2 NOT NULL" in text
        assert "PRIMARY KEY CLUSTERED (ts, device, sensor)" in text
        assert "device VARCHAR(64) NOT NULL" in text
    assert "is_anomaly BIT NOT NULL" in ddl["predictions"]
    assert "value FLOAT NOT NULL" in ddl["sensor_values"]


def test_stream_analytics_redelivery_into_azure_sql_is_ignored_not_a_stop():
    """ASA's at-least-once output re-delivers windows after a restart: sensor_values' key ignores
    the duplicates on SQL Server (IGNORE_DUP_KEY) instead of failing the insert, which would stop
    the job (output error policy Stop). Only that key, only on SQL Server."""
    import re

    from sqlalchemy.dialects import postgresql, sqlite

    ddl = str(CreateTable(sensor_values).compile(dialect=mssql.dialect()))
    assert re.search(r"PRIMARY KEY CLUSTERED \(ts, device, sensor\) WITH \(IGNORE_DUP_KEY = ON\)\s*\)\s*$", ddl)
    assert "IGNORE_DUP_KEY" not in str(CreateTable(predictions).compile(dialect=mssql.dialect()))
    for other in (postgresql.dialect(), sqlite.dialect()):
        assert "IGNORE_DUP_KEY" not in str(CreateTable(sensor_values).compile(dialect=other))


def test_azure_sql_replace_statements_compile_for_mssql():
    # pyodbc's paramstyle, which create_engine would read from the driver module
    t = predictions.c
    delete = predictions.delete().where(sa.and_(t.ts > H0, t.ts <= H1, t.sensor.in_(["s1", "s2"])))
    compiled = delete.compile(dialect=MSDialect_pyodbc(paramstyle="qmark"), compile_kwargs={"render_postcompile": True})
    assert str(compiled) == ("DELETE FROM predictions WHERE predictions.ts > ? AND predictions.ts <= ? "
                             "AND predictions.sensor IN (?, ?)")
    assert list(compiled.params.values()) == [H0, H1, "s1", "s2"]
    insert = str(sensor_values.insert().compile(dialect=MSDialect_pyodbc(paramstyle="qmark")))
    assert insert == ("INSERT INTO sensor_values (device, sensor, ts, value, readings, low, high) "
                      "VALUES (?, ?, ?, ?, ?, ?, ?)")


def test_engine_options_per_dialect():
    azure_sql = ("mssql+pyodbc://bscore@myserver.database.windows.net:1433/bscore"
                 "?driver=ODBC+Driver+18+for+SQL+Server&Encrypt=yes&authentication=ActiveDirectoryMsi")
    assert engine_options(azure_sql) == {"fast_executemany": True}
    assert engine_options("postgresql+psycopg://u@h/db") == {}
    assert engine_options("sqlite:///x.db") == {"connect_args": {"timeout": 60}}


@pytest.mark.parametrize("url, expected", [
    ("mssql+pyodbc://@srv.database.windows.net:1433/bscore?driver=ODBC+Driver+18+for+SQL+Server&Encrypt=yes"
     "&authentication=ActiveDirectoryMsi", ["Authentication=ActiveDirectoryMsi"]),
    ("mssql+pyodbc://0000-client-id@srv.database.windows.net:1433/bscore?driver=ODBC+Driver+18+for+SQL+Server"
     "&Encrypt=yes&authentication=ActiveDirectoryMsi", ["UID=0000-client-id", "authentication=ActiveDirectoryMsi"]),
    ("mssql+pyodbc://bscore:p%40ss@srv.database.windows.net:1433/bscore?driver=ODBC+Driver+18+for+SQL+Server"
     "&Encrypt=yes", ["UID=bscore", "PWD=p@ss"]),
])
def test_documented_azure_sql_urls_make_these_odbc_connection_strings(url, expected):
    (odbc,), _ = MSDialect_pyodbc().create_connect_args(sa.make_url(url))
    parts = odbc.split(";")
    assert parts[:3] == ["DRIVER={ODBC Driver 18 for SQL Server}", "Server=srv.database.windows.net,1433",
                         "Database=bscore"]
    assert set(expected) | {"Encrypt=yes"} == set(parts[3:])  # never Trusted_Connection (Windows logins)
    assert "p@ss" not in SqlStore(url=url).describe() and "p%40ss" not in SqlStore(url=url).describe()


def test_concurrent_replaces_of_the_same_hours_wait_for_each_other(store):
    from concurrent.futures import ThreadPoolExecutor

    frames = [windows(H0, devices=[f"d{i}" for i in range(20)], seed=seed) for seed in range(6)]

    def replace(frame):
        SqlStore(url=store.url).replace_sensor_values(frame, H0, H1)

    with ThreadPoolExecutor(max_workers=3) as pool:
        list(pool.map(replace, frames))  # an IntegrityError or "database is locked" would surface here
    stored = sort(store.read_sensor_values(H0, H1))
    assert len(stored) == len(frames[0])
    assert any(stored["value"].equals(sort(f)["value"]) for f in frames)  # exactly one writer's rows


def test_describe_masks_passwords_in_the_url_and_its_query():
    assert "pw" not in SqlStore(url="postgresql+psycopg://u:pw@h/db?sslmode=require").describe()
    odbc = SqlStore(url="mssql+pyodbc:///?odbc_connect=DRIVER%3D%7BODBC%7D%3BPWD%3Dsecret-pw").describe()
    assert "secret-pw" not in odbc and "odbc_connect" in odbc


def test_latest_window_is_the_newest_stored_end(store):
    assert store.latest_window() is None
    store.replace_sensor_values(windows(H0), H0, H1)
    store.replace_sensor_values(windows(H1, per_hour=12), H1, H2)
    assert store.latest_window() == H2


def test_batches_replace_the_hour_as_one_frame_does(store):
    store.replace_sensor_values(windows(H1), H1, H2)
    frame = windows(H0, seed=7)
    halves = [pa.Table.from_pandas(part, preserve_index=False) for part in (frame.iloc[:1000], frame.iloc[1000:])]
    store.replace_sensor_values_batches(H0, H1, iter([halves[0], halves[0].slice(0, 0), halves[1]]))
    pd.testing.assert_frame_equal(store.read_sensor_values(H0, H1), sort(frame), check_exact=True)
    pd.testing.assert_frame_equal(store.read_sensor_values(H1, H2), sort(windows(H1)))


def test_a_crash_between_batches_leaves_the_old_rows(store):
    store.replace_sensor_values(windows(H0), H0, H1)

    def batches():
        yield pa.Table.from_pandas(windows(H0, devices=("d1",), seed=8), preserve_index=False)
        raise MemoryError("killed while computing the second batch")

    with pytest.raises(MemoryError):
        store.replace_sensor_values_batches(H0, H1, batches())
    spills_over = [pa.Table.from_pandas(windows(H0, devices=("d7",)), preserve_index=False),
                   pa.Table.from_pandas(windows(H1, devices=("d8",)), preserve_index=False)]
    with pytest.raises(ValueError, match="1440 of 1440 rows for sensor_values"):
        store.replace_sensor_values_batches(H0, H1, spills_over)
    pd.testing.assert_frame_equal(store.read_sensor_values(H0, H1), sort(windows(H0)))
