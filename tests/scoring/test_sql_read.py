"""One reader per table: the resource and the Azure ML job read the same rows, typed by the
table's definition, on SQLite (ADBC), SQLite in memory (SQLAlchemy) and PostgreSQL (ADBC)."""

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from resources.sql import SqlStore, predictions
from scoring.shard_sql import ShardSql
from scoring.sql_read import arrow_type, read_predictions, read_table
from tests.resources.test_sql import H0, H1, scored, windows

TEXT_TS = sa.Table("text_ts", sa.MetaData(), sa.Column("ts", sa.DateTime), sa.Column("device", sa.String(8)),
                   sa.Column("n", sa.Integer, nullable=True), sa.Column("flag", sa.Boolean))


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path) -> SqlStore:
    if request.param == "sqlite":
        return SqlStore(url=f"sqlite:///{tmp_path / 'bscore.db'}")
    store = SqlStore(url=request.getfixturevalue("postgres_url"))
    with store.engine.begin() as conn:  # the session's database is shared by the tests
        conn.execute(sa.text("TRUNCATE sensor_values, predictions"))
    return store


def test_the_job_and_the_resource_read_the_same_windows_typed_alike(store):
    stored = windows(H0, devices=("d1", "d2", "d3"))
    store.replace_sensor_values(stored, H0, H1)
    job = ShardSql(store.url).read_sensor_values(H0, H1, devices=["d3", "d1"], sensors=["s2"])
    resource = store.read_sensor_values(H0, H1, devices=["d3", "d1"], sensors=["s2"])
    pd.testing.assert_frame_equal(job, resource)
    expected = stored[stored["device"].isin(["d1", "d3"]) & (stored["sensor"] == "s2")].reset_index(drop=True)
    pd.testing.assert_frame_equal(resource[expected.columns], expected, check_dtype=False)
    text = str(pd.Series(["a"]).dtype)  # pandas' string dtype
    assert resource.dtypes.astype(str).to_dict() == {"ts": "datetime64[ns]", "device": text, "sensor": text,
                                                       "value": "float64", "readings": "int64"}


def test_a_reflected_table_reads_as_its_definition_does(store):
    store.replace_predictions(scored(windows(H0)), H0, H1, ["s1", "s2"])
    defined = read_predictions(store.engine, H0, H1, table=predictions)
    reflected = read_predictions(store.engine, H0, H1)
    pd.testing.assert_frame_equal(defined, reflected)
    assert defined["is_anomaly"].dtype == bool and defined["score"].dtype == np.float64


def test_the_sqlalchemy_path_types_columns_as_the_adbc_path_does(tmp_path):
    rows = [{"ts": pd.Timestamp("2026-01-01T00:00:05.250").to_pydatetime(), "device": "a", "n": 3, "flag": True},
            {"ts": pd.Timestamp("2026-01-01T00:00:10").to_pydatetime(), "device": "b", "n": None, "flag": False}]
    frames = []
    for url in ("sqlite://", f"sqlite:///{tmp_path / 'file.db'}"):  # in memory: no ADBC; a file: ADBC
        engine = sa.create_engine(url)
        TEXT_TS.metadata.create_all(engine)
        with engine.begin() as conn:
            conn.execute(TEXT_TS.insert(), rows)
        frames.append(read_table(engine, TEXT_TS))
    pd.testing.assert_frame_equal(frames[0], frames[1])
    assert frames[0]["ts"].tolist() == [pd.Timestamp("2026-01-01T00:00:05.250"), pd.Timestamp("2026-01-01T00:00:10")]
    assert frames[0]["flag"].tolist() == [True, False]
    assert np.isnan(frames[0]["n"].iloc[1])  # a nullable integer with a null reads as float


def test_a_column_type_the_readers_do_not_know_is_named():
    table = sa.Table("odd", sa.MetaData(), sa.Column("blob", sa.LargeBinary))
    with pytest.raises(TypeError, match="odd.blob"):
        arrow_type(table.c.blob)
