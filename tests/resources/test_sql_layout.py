"""Time-leading keys: an hour's queries seek to its rows, and older databases migrate in place.

A new SQLite store answers an hour's read, replace and count with a ``SEARCH`` on ``ts`` (not a
``SCAN`` of the history); PostgreSQL's keys lead with ``ts``. A database made with the old
``(device, sensor, ts)`` keys is migrated when a store opens it, rows kept, and a second open
changes nothing; a half-done SQLite rebuild is redone.
"""

import pandas as pd
import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import mssql

from resources import sql, sql_layout
from resources.sql import SqlStore
from tests.conftest import postgres_database, sqlalchemy_postgres_url

HOUR = pd.Timestamp("2026-01-01T05:00")


def old_layout(*extra: sa.Column) -> sa.MetaData:
    return sql_layout.device_leading_layout(sql.metadata, *extra)


def windows(hours: int = 3, devices: int = 4) -> pd.DataFrame:
    ends = pd.date_range(HOUR + pd.Timedelta(seconds=5), HOUR + pd.Timedelta(hours=hours), freq="600s")
    rows = [(ts, f"d{d}", s, float(d * 10 + s), 3) for ts in ends for d in range(devices) for s in (1, 2)]
    frame = pd.DataFrame(rows, columns=["ts", "device", "sensor", "value", "readings"])
    frame["sensor"] = frame["sensor"].astype(str)
    return frame


def insert_old_rows(engine: sa.Engine, frame: pd.DataFrame) -> None:
    with engine.begin() as conn:
        conn.execute(sql.sensor_values.insert(), frame.to_dict("records"))
        conn.execute(sql.device_verdicts.insert(), [
            {"ts": ts, "device": device, "is_anomaly": False, "sensors_scored": 2, "sensors_flagged": 0,
             "flagged_sensors": ""} for ts, device in frame[["ts", "device"]].drop_duplicates().itertuples(index=False)])


def sorted_rows(frame: pd.DataFrame) -> list[tuple]:
    return sorted(map(tuple, frame[["ts", "device", "sensor", "value", "readings"]].astype(str).to_numpy()))


def query_plan(engine: sa.Engine, query) -> str:
    text = str(query.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True}))
    with engine.connect() as conn:
        return " | ".join(row[-1] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {text}"))


@pytest.mark.parametrize("table", [sql.sensor_values, sql.predictions, sql.device_verdicts], ids=lambda t: t.name)
def test_sqlite_hour_queries_search_by_ts_instead_of_scanning(tmp_path, table):
    store = SqlStore(url=f"sqlite:///{tmp_path / 'new.db'}")
    t = table.c
    hour = sa.and_(t.ts > HOUR, t.ts <= HOUR + pd.Timedelta(hours=1))
    for query in (sa.select(*table.columns).where(hour), sa.select(sa.func.count()).where(hour)):
        plan = query_plan(store.engine, query)
        assert f"SEARCH {table.name}" in plan and "ts>" in plan.replace(" ", ""), plan
        assert f"SCAN {table.name}" not in plan, plan


def test_postgresql_keys_lead_with_ts():
    with postgres_database("bscore_layout") as name:
        store = SqlStore(url=sqlalchemy_postgres_url(name))
        with store.engine.connect() as conn:
            leading = dict(conn.execute(sa.text(
                "SELECT c.relname, a.attname FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid "
                "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] "
                "WHERE c.relname IN ('sensor_values', 'predictions', 'device_verdicts')")).all())
        store.engine.dispose()
    assert leading == {"sensor_values": "ts", "predictions": "ts", "device_verdicts": "ts"}


def migrated_store(url: str) -> tuple[SqlStore, pd.DataFrame]:
    old_engine = sa.create_engine(url)
    old_layout().create_all(old_engine)
    frame = windows()
    insert_old_rows(old_engine, frame)
    assert sql_layout.needs_migration(old_engine, sql.sensor_values)
    old_engine.dispose()
    return SqlStore(url=url), frame


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_an_old_database_migrates_in_place_with_its_rows(tmp_path, dialect):
    if dialect == "sqlite":
        store, frame = migrated_store(f"sqlite:///{tmp_path / 'old.db'}")
        check(store, frame)
        return
    with postgres_database("bscore_layout") as name:
        store, frame = migrated_store(sqlalchemy_postgres_url(name))
        try:
            check(store, frame)
        finally:
            store.engine.dispose()


def check(store: SqlStore, frame: pd.DataFrame) -> None:
    engine = store.engine  # opening the store migrated it
    for table in sql.metadata.sorted_tables:
        assert sql_layout.key_columns(engine, table.name) == [c.name for c in table.primary_key.columns]
        assert not sql_layout.needs_migration(engine, table)
    assert sorted_rows(store.read_sensor_values()) == sorted_rows(frame)
    assert len(store.read_device_verdicts()) == frame[["ts", "device"]].drop_duplicates().shape[0]
    assert store.window_stats(HOUR, HOUR + pd.Timedelta(hours=1)) == (6 * 8, 6 * 8 * 3)
    assert sql_layout.migrate_to_time_leading_keys(engine) == []
    store.replace_sensor_values(frame[frame["ts"] <= HOUR + pd.Timedelta(hours=1)], HOUR, HOUR + pd.Timedelta(hours=1))
    assert sorted_rows(store.read_sensor_values()) == sorted_rows(frame)


def test_a_sqlite_rebuild_keeps_another_versions_nullable_column_and_is_without_rowid(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = sa.create_engine(url)
    old_layout(sa.Column("calibration", sa.Float, nullable=True)).create_all(engine)
    insert_old_rows(engine, windows(hours=1))
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE sensor_values SET calibration = value - 1"))
    assert sorted(sql_layout.migrate_to_time_leading_keys(engine)) == ["device_verdicts", "predictions", "sensor_series",
                                                                       "sensor_values"]
    with engine.connect() as conn:
        created = conn.execute(sa.text("SELECT sql FROM sqlite_master WHERE name = 'sensor_values'")).scalar()
        kept = conn.execute(sa.text("SELECT count(*) FROM sensor_values WHERE calibration = value - 1")).scalar()
    assert "WITHOUT ROWID" in created.upper()
    assert kept == len(windows(hours=1))


def test_a_half_done_sqlite_rebuild_is_redone(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = sa.create_engine(url)
    old_layout().create_all(engine)
    frame = windows()
    insert_old_rows(engine, frame)
    with engine.begin() as conn:  # a copy that stopped after a few rows
        conn.execute(sa.text(f"CREATE TABLE sensor_values{sql_layout.REBUILD_SUFFIX} AS "
                             "SELECT * FROM sensor_values LIMIT 5"))
    store = SqlStore(url=url)
    assert sorted_rows(store.read_sensor_values()) == sorted_rows(frame)
    assert f"sensor_values{sql_layout.REBUILD_SUFFIX}" not in sa.inspect(store.engine).get_table_names()


def test_a_rebuild_failing_after_the_old_table_is_dropped_leaves_the_old_table(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = sa.create_engine(url)
    old_layout().create_all(engine)
    frame = windows()
    insert_old_rows(engine, frame)
    planned = sql_layout.rebuild_statements

    def failing_after_the_drop(name, *args):
        statements = planned(name, *args)
        return statements[:4] + ["SELECT no_such_function()"] + statements[4:]

    monkeypatch.setattr(sql_layout, "rebuild_statements", failing_after_the_drop)
    with pytest.raises(RuntimeError, match="migrating table device_verdicts .*rolled back.*no_such_function"):
        sql_layout.migrate_to_time_leading_keys(engine)
    assert sql_layout.key_columns(engine, "device_verdicts") == ["device", "ts"]
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM device_verdicts")).scalar() == len(
            frame[["ts", "device"]].drop_duplicates())
    assert f"device_verdicts{sql_layout.REBUILD_SUFFIX}" not in sa.inspect(engine).get_table_names()
    monkeypatch.undo()
    assert sorted_rows(SqlStore(url=url).read_sensor_values()) == sorted_rows(frame)


def test_sql_server_key_is_clustered_on_ts_first():
    ddl = str(sa.schema.AddConstraint(sql.sensor_values.to_metadata(sa.MetaData()).primary_key)
              .compile(dialect=mssql.dialect()))
    assert "PRIMARY KEY CLUSTERED (ts, device, sensor)" in ddl
    created = str(sa.schema.CreateTable(sql.device_verdicts).compile(dialect=mssql.dialect()))
    assert "PRIMARY KEY CLUSTERED (ts, device)" in created


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_replacing_windows_keeps_the_fleets_series_and_an_old_database_gets_them(tmp_path, dialect):
    from bscore_assets.ingestion.fleet import fleet_series

    def pairs(store):
        return sorted(map(tuple, fleet_series(store).to_numpy()))

    def run(url):
        store, frame = migrated_store(url)
        try:
            assert pairs(store) == sorted({(d, s) for d, s in zip(frame["device"], frame["sensor"])})
            later = HOUR + pd.Timedelta(hours=5)
            new = pd.DataFrame({"ts": [later + pd.Timedelta(seconds=5)], "device": ["d9"], "sensor": ["7"],
                                "value": [1.0], "readings": [1]})
            store.replace_sensor_values(new, later, later + pd.Timedelta(hours=1))
            store.replace_sensor_values(new, later, later + pd.Timedelta(hours=1))  # a replace adds no pair twice
            assert ("d9", "7") in pairs(store) and len(pairs(store)) == 9
            plan = query_plan(store.engine, sa.select(sql.sensor_series.c.device)) if dialect == "sqlite" else ""
            assert "sensor_values" not in plan
        finally:
            sql._engines.pop(url, None)
            store.engine.dispose()

    if dialect == "sqlite":
        run(f"sqlite:///{tmp_path / 'old.db'}")
        return
    with postgres_database("bscore_layout") as name:
        run(sqlalchemy_postgres_url(name))
