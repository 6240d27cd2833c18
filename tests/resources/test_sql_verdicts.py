"""Device verdicts in SQL: an hour is replaced whole in one transaction, re-running it changes
nothing, a failure leaves the previous rows; on SQLite and the local PostgreSQL (the ``store``
fixture of ``test_sql``); the Azure SQL DDL is compiled for the mssql dialect."""

import pandas as pd
import pyarrow as pa
import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import mssql
from sqlalchemy.schema import CreateTable

from resources.sql import device_verdicts as device_verdicts_table
from scoring.verdicts import VERDICT_COLUMNS, device_verdicts
from tests.resources.test_sql import H0, H1, H2, scored, store, windows  # noqa: F401


@pytest.fixture
def verdict_store(store):  # noqa: F811
    """The store, with no verdicts left by another test on the shared PostgreSQL database."""
    with store.engine.begin() as conn:
        conn.execute(device_verdicts_table.delete())
    return store


def verdicts_of(hour, seed=0, devices=("d1", "d2", "d3")) -> pa.Table:
    predictions = scored(windows(hour, devices=devices, sensors=("s1", "s2", "s3"), seed=seed))
    return device_verdicts(predictions)


def stored(store, start=None, end=None, devices=None) -> pd.DataFrame:
    return store.read_device_verdicts(start, end, devices)


def expected(*tables: pa.Table) -> pd.DataFrame:
    frame = pd.concat([t.to_pandas() for t in tables], ignore_index=True)
    return frame.sort_values(["device", "ts"]).reset_index(drop=True)[VERDICT_COLUMNS]


def test_an_hour_is_replaced_whole_and_a_rerun_changes_nothing(verdict_store):
    first, other_hour = verdicts_of(H0), verdicts_of(H1, seed=5)
    assert 0 < first["sensors_flagged"].to_numpy().sum() and "," in "".join(first["flagged_sensors"].to_pylist())
    assert verdict_store.replace_device_verdicts_batches(H0, H1, [first]) == 3 * 720
    verdict_store.replace_device_verdicts_batches(H1, H2, [other_hour])
    pd.testing.assert_frame_equal(stored(verdict_store, H0, H1), expected(first))

    second = verdicts_of(H0, seed=1, devices=("d1", "d4"))  # d2, d3 gone, d4 new
    for _ in range(2):  # idempotent: the same hour twice holds it once
        verdict_store.replace_device_verdicts_batches(H0, H1, [second.slice(0, 700), second.slice(700)])
        pd.testing.assert_frame_equal(stored(verdict_store, H0, H1), expected(second))
    pd.testing.assert_frame_equal(stored(verdict_store, H1, H2), expected(other_hour))  # the next hour stays
    pd.testing.assert_frame_equal(stored(verdict_store, H0, H1, devices=["d4"]),
                                  expected(second.filter(pa.compute.equal(second["device"], "d4"))))


def test_a_refused_or_failing_batch_leaves_the_previous_hour(verdict_store):
    verdict_store.replace_device_verdicts_batches(H0, H1, [verdicts_of(H0)])
    before = stored(verdict_store)
    with pytest.raises(ValueError, match="rows for device_verdicts lie outside"):
        verdict_store.replace_device_verdicts_batches(H0, H1, [verdicts_of(H0, seed=2), verdicts_of(H1)])
    pd.testing.assert_frame_equal(stored(verdict_store), before)

    def failing():
        yield verdicts_of(H0, seed=3)
        raise RuntimeError("the predictions could not be read")

    with pytest.raises(RuntimeError, match="could not be read"):
        verdict_store.replace_device_verdicts_batches(H0, H1, failing())
    pd.testing.assert_frame_equal(stored(verdict_store), before)


def test_a_device_window_stored_twice_breaks_the_key_and_keeps_the_previous_rows(verdict_store):
    verdict_store.replace_device_verdicts_batches(H0, H1, [verdicts_of(H0)])
    before = stored(verdict_store)
    again = verdicts_of(H0, seed=4)
    with pytest.raises(sa.exc.IntegrityError):
        verdict_store.replace_device_verdicts_batches(H0, H1, [again, again.slice(0, 1)])
    pd.testing.assert_frame_equal(stored(verdict_store), before)


def test_no_flag_is_stored_as_an_empty_list_not_null(verdict_store):
    quiet = pd.DataFrame({"ts": [H0 + pd.Timedelta(seconds=5)] * 2, "device": "d1", "sensor": ["s1", "s2"],
                          "is_anomaly": [False, False]})
    verdict_store.replace_device_verdicts_batches(H0, H1, [device_verdicts(quiet)])
    assert stored(verdict_store).to_dict("records") == [
        {"ts": H0 + pd.Timedelta(seconds=5), "device": "d1", "is_anomaly": False, "sensors_scored": 2,
         "sensors_flagged": 0, "flagged_sensors": "", "method": "vote", "score": 0.0, "contributions": ""}]


def test_azure_sql_ddl_compiles_for_mssql():
    ddl = str(CreateTable(device_verdicts_table).compile(dialect=mssql.dialect()))
    assert "PRIMARY KEY CLUSTERED (ts, device)" in ddl
    assert "ts DATETIME2 NOT NULL" in ddl and "is_anomaly BIT NOT NULL" in ddl
    assert "flagged_sensors VARCHAR(max) NOT NULL" in ddl
    assert "method VARCHAR(16) NULL" in ddl and "score FLOAT NULL" in ddl and "contributions VARCHAR(max) NULL" in ddl
