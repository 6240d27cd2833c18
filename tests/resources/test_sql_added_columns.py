"""A database made by an older bscore gains the nullable columns a newer one defines, in place.

On each dialect an old table (a newer definition minus its nullable column) holds a row; after
``add_missing_columns`` the column is there, the row stays and reads NULL, and a second start
adds nothing. A missing NOT NULL column is still refused by ``ensure_schema``, by name.
"""

import uuid

import pytest
import sqlalchemy as sa

from resources import sql


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request, tmp_path):
    if request.param == "sqlite":
        yield sa.create_engine(f"sqlite:///{tmp_path / 'old.db'}")
        return
    yield sa.create_engine(request.getfixturevalue("postgres_url").replace("postgresql://", "postgresql+psycopg://"))


def windows_table(tables: sa.MetaData, name: str, *extra: sa.Column) -> sa.Table:
    return sa.Table(name, tables,
                    sa.Column("device", sa.String(64), primary_key=True),
                    sa.Column("ts", sql.Timestamp, primary_key=True),
                    sa.Column("value", sa.Float, nullable=False), *extra)


def test_a_newer_nullable_column_is_added_in_place_and_old_rows_read_as_null(engine):
    name = f"windows_{uuid.uuid4().hex[:8]}"
    old_table = windows_table(sa.MetaData(), name)
    old_table.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(sa.text(f"INSERT INTO {name} (device, ts, value) VALUES ('d1', '2026-01-01 00:00:05', 1.5)"))
    newer = windows_table(sa.MetaData(), name, sa.Column("high", sa.Float, nullable=True))
    try:
        added = sql.add_missing_columns(engine, newer.metadata)
        again = sql.add_missing_columns(engine, newer.metadata)
        with engine.connect() as conn:
            rows = conn.execute(sa.text(f"SELECT device, value, high FROM {name}")).all()
    finally:
        old_table.metadata.drop_all(engine)
    assert added == [f"{name}.high"]
    assert again == []
    assert [tuple(row) for row in rows] == [("d1", 1.5, None)]


def test_a_missing_not_null_column_is_still_refused_by_name(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    old = sa.MetaData()
    sql.predictions.to_metadata(old)
    old.create_all(engine)
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE predictions DROP COLUMN score"))
    with pytest.raises(RuntimeError, match=r"table predictions .*missing columns \['score'\]"):
        sql.ensure_schema(engine)


def test_device_verdicts_from_before_the_verdict_method_gain_its_columns_in_place(engine):
    """A device_verdicts table of an older bscore (no method, score, contributions; under a name
    of its own, not to disturb the shared database's table) keeps its rows and reads them with
    nulls there."""
    name = f"device_verdicts_{uuid.uuid4().hex[:8]}"
    newer = sql.device_verdicts.to_metadata(sa.MetaData(), name=name).metadata
    old_table = sql.device_verdicts.to_metadata(sa.MetaData(), name=name)
    for column in ("method", "score", "contributions"):
        old_table._columns.remove(old_table.c[column])
    old_table.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(sa.text(f"INSERT INTO {name} (device, ts, is_anomaly, sensors_scored, sensors_flagged, "
                             "flagged_sensors) VALUES ('d1', '2026-01-01 00:00:05', false, 2, 0, '')"))
    try:
        added = sql.add_missing_columns(engine, newer)
        with engine.connect() as conn:
            rows = conn.execute(sa.text(f"SELECT device, method, score, contributions FROM {name}")).all()
    finally:
        old_table.metadata.drop_all(engine)
    assert sorted(added) == sorted(f"{name}.{column}" for column in ("method", "score", "contributions"))
    assert [tuple(row) for row in rows] == [("d1", None, None, None)]


def test_ensure_schema_migrates_an_older_device_verdicts_table_in_place(tmp_path):
    """The real table on a fresh SQLite file: a database of a bscore from before the verdict's
    method, score and contributions starts with them, its old rows null there."""
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    old = sa.MetaData()
    table = sql.device_verdicts.to_metadata(old)
    for column in ("method", "score", "contributions"):
        table._columns.remove(table.c[column])
    old.create_all(engine)
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO device_verdicts (device, ts, is_anomaly, sensors_scored, sensors_flagged, "
                             "flagged_sensors) VALUES ('d1', '2026-01-01 00:00:05', 0, 2, 0, '')"))
    sql.ensure_schema(engine)
    store = sql.SqlStore(url=str(engine.url))
    frame = store.read_device_verdicts()
    assert frame["device"].tolist() == ["d1"] and frame[["method", "score", "contributions"]].isna().all(axis=None)
