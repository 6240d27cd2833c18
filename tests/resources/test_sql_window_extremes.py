"""Windows' extremes (``low``, ``high``) in SQL ``sensor_values`` on SQLite and PostgreSQL.

A database made before windows recorded them gains the two columns in place when a newer
bscore starts on it; its old windows read back with NaN extremes through both readers (the
store's and a scoring job's ``ShardSql``), new windows keep theirs exactly, and a writer that
leaves them out stores NULL. (A reader on the database before the upgrade sees no such
columns, and the scorer then judges the windows by their means alone.)
"""

from contextlib import contextmanager

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from resources import sql
from scoring.shard_sql import ShardSql
from scoring.sql_read import read_sensor_values
from tests.conftest import postgres_database, sqlalchemy_postgres_url

H0 = pd.Timestamp("2026-01-01T00:00")
H1, H2 = H0 + pd.Timedelta(hours=1), H0 + pd.Timedelta(hours=2)
BEFORE = ["device", "sensor", "ts", "value", "readings"]  # sensor_values before extremes


@contextmanager
def fresh_database(dialect: str, tmp_path):
    if dialect == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.db'}"
        return
    with postgres_database("bscore_extremes") as name:
        yield sqlalchemy_postgres_url(name)


def old_windows_table() -> sa.MetaData:
    """``sensor_values`` as bscore defined it before windows carried their extremes."""
    tables = sa.MetaData()
    sa.Table("sensor_values", tables, *[sa.Column(c.name, c.type, primary_key=c.primary_key, nullable=c.nullable)
                                        for c in sql.sensor_values.columns if c.name in BEFORE])
    return tables


def windows(hour: pd.Timestamp, extremes: bool) -> pd.DataFrame:
    ends = hour + pd.to_timedelta(np.arange(1, 5) * 5, unit="s")
    frame = pd.DataFrame({"ts": ends.astype("datetime64[ns]"), "device": "d1", "sensor": "s1",
                          "value": [1.5, 2.25, -3.0, 4.125], "readings": [5, 5, 1, 3]})
    if extremes:
        frame["low"], frame["high"] = frame["value"] - [0.5, 0.25, 0.0, 1.0], frame["value"] + [1.5, 0.75, 0.0, 2.0]
    return frame


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_an_older_database_gains_the_columns_in_place_and_its_old_windows_read_without_extremes(dialect, tmp_path):
    with fresh_database(dialect, tmp_path) as url:
        engine = sa.create_engine(url)
        old_windows_table().create_all(engine)
        with engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO sensor_values (device, sensor, ts, value, readings) "
                                 "VALUES ('d1', 's1', '2026-01-01 00:00:05', 1.5, 5)"))
        # A scoring job may read before any newer bscore has started on the database: its reader
        # (ShardSql's, on the table reflected from the database) finds windows without extremes.
        before = read_sensor_values(engine, H0, H1, table=sa.Table("sensor_values", sa.MetaData(),
                                                                   autoload_with=engine))
        assert before["value"].tolist() == [1.5] and "low" not in before and "high" not in before
        engine.dispose()

        store = sql.SqlStore(url=url)  # its first connection runs ensure_schema
        columns = {c["name"]: c for c in sa.inspect(store.engine).get_columns("sensor_values")}
        assert columns["low"]["nullable"] and columns["high"]["nullable"]
        old = store.read_sensor_values(H0, H1)
        assert old["value"].tolist() == [1.5] and old[["low", "high"]].isna().all().all()
        assert old[["low", "high"]].dtypes.tolist() == [np.float64, np.float64]

        store.replace_sensor_values(windows(H1, extremes=True), H1, H2)
        for reader in (store, ShardSql(url)):
            read = reader.read_sensor_values(H1, H2)
            pd.testing.assert_frame_equal(read[["ts", "value", "readings", "low", "high"]].reset_index(drop=True),
                                          windows(H1, extremes=True)[["ts", "value", "readings", "low", "high"]],
                                          check_exact=True)
        sql._engines.pop((url, store.auth)).dispose()


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_a_writer_that_leaves_the_extremes_out_stores_null(dialect, tmp_path):
    with fresh_database(dialect, tmp_path) as url:
        store = sql.SqlStore(url=url)
        store.replace_sensor_values(windows(H0, extremes=False), H0, H1)
        read = store.read_sensor_values(H0, H1)
        assert read["value"].tolist() == windows(H0, extremes=False)["value"].tolist()
        assert read[["low", "high"]].isna().all().all()
        with store.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT COUNT(*) FROM sensor_values WHERE low IS NULL AND high IS NULL")
                                ).scalar_one() == 4
        sql._engines.pop((url, store.auth)).dispose()
