"""SqlStore's predictions written by shards: device-scoped replace, the run's staging table,
publishing an hour from it in one transaction, and stale staging tables dropped.

On SQLite and the local PostgreSQL (the ``store`` fixture of ``test_sql``); the job side
(``scoring.shard_sql.ShardSql``, no Dagster) writes to the same staging table.
"""

import pandas as pd
import pytest
import sqlalchemy as sa

from resources.sql import staging_table_name
from scoring.shard_sql import ShardSql
from tests.resources.test_sql import H0, H1, H2, scored, sort, store, windows  # noqa: F401

SENSORS = ["s1", "s2"]


def test_device_scoped_replace_keeps_the_other_devices_rows(store):
    store.replace_predictions(scored(windows(H0, devices=("d1", "d2", "d3"))), H0, H1, SENSORS)
    new = scored(windows(H0, devices=("d2",), seed=5), version="v2")
    store.replace_device_predictions(new, H0, H1, SENSORS, ["d2"])
    stored = store.read_predictions(H0, H1)
    assert len(stored) == 3 * 2 * 720
    assert sorted(stored.groupby("device")["model_version"].first().items()) == [("d1", "v1"), ("d2", "v2"),
                                                                                 ("d3", "v1")]
    pd.testing.assert_frame_equal(sort(stored[stored["device"] == "d2"]), sort(new), check_dtype=False)
    # A device scored by no model any more loses its rows; others stay.
    store.replace_device_predictions(new.iloc[0:0], H0, H1, SENSORS, ["d3"])
    assert sorted(store.read_predictions(H0, H1)["device"].unique()) == ["d1", "d2"]
    with pytest.raises(ValueError, match="outside the hours, sensors and devices"):
        store.replace_device_predictions(new, H0, H1, SENSORS, ["d1"])


def test_staged_shards_publish_an_hour_whole_in_one_step(store):
    store.replace_predictions(scored(windows(H0)), H0, H1, SENSORS)  # an earlier run's hour
    before = sort(store.read_predictions())
    staging = staging_table_name()
    store.create_prediction_staging(staging)
    try:
        job_side = ShardSql(store.url)  # what an Azure ML job writes with
        shard_a = scored(windows(H0, devices=("d1",), seed=1), version="v2")
        shard_b = scored(windows(H0, devices=("d2",), seed=2), version="v2")
        store.stage_predictions(staging, shard_a, H0, H1, SENSORS, ["d1"])
        store.stage_predictions(staging, shard_a, H0, H1, SENSORS, ["d1"])  # a retried shard: no duplicates
        job_side.stage_predictions(staging, shard_b, H0, H1, SENSORS, ["d2"])
        # Staged rows are invisible until published: the hour is still the earlier run's.
        pd.testing.assert_frame_equal(sort(store.read_predictions()), before)
        assert store.publish_staged_predictions(staging, H0, H1, SENSORS) == 2 * 2 * 2 * 720 // 2
        stored = sort(store.read_predictions())
        pd.testing.assert_frame_equal(stored, sort(pd.concat([shard_a, shard_b])), check_dtype=False)
        # The job side reads the windows the run's SqlStore wrote.
        store.replace_sensor_values(windows(H1), H1, H2)
        read = job_side.read_sensor_values(H1, H2, devices=["d2"], sensors=["s1"])
        expected = store.read_sensor_values(H1, H2, devices=["d2"], sensors=["s1"])
        pd.testing.assert_frame_equal(read, expected, check_dtype=False)
        assert store.devices_with_windows(H1, H2, ["s1"]) == ["d1", "d2"]
        assert store.devices_with_windows(H0, H1, ["s1"]) == []
    finally:
        store.drop_prediction_staging(staging)
    assert staging not in sa.inspect(store.engine).get_table_names()


def test_staging_tables_of_killed_runs_are_dropped_after_a_day(store):
    old, fresh = staging_table_name(pd.Timestamp("2026-01-01T00:00")), staging_table_name()
    for name in (old, fresh):
        store.create_prediction_staging(name)
    try:
        assert store.drop_stale_prediction_staging() == [old]
        assert fresh in sa.inspect(store.engine).get_table_names()
    finally:
        store.drop_prediction_staging(fresh)
        store.drop_prediction_staging(old)


def test_staging_names_are_checked_before_reaching_sql(store):
    with pytest.raises(ValueError, match="not a prediction staging table name"):
        store.create_prediction_staging("predictions; DROP TABLE sensor_values")
