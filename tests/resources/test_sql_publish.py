"""Predictions published from Arrow batches (the shards' parts) in one transaction per hour:
what the batches hold replaces the hour's sensors, and a refused or failing batch leaves the
previous rows. On SQLite and the local PostgreSQL (the ``store`` fixture of ``test_sql``); the
Azure ML job side (``scoring.shard_sql.ShardSql``, no Dagster) reads the same windows.
"""

import pandas as pd
import pyarrow as pa
import pytest

from scoring.shard_sql import ShardSql
from tests.resources.test_sql import H0, H1, H2, scored, sort, store, windows  # noqa: F401

SENSORS = ["s1", "s2"]


def batches(*frames):
    return (pa.Table.from_pandas(frame, preserve_index=False) for frame in frames)


def test_an_hour_is_replaced_by_its_batches_whole(store):
    store.replace_predictions(scored(windows(H0, devices=("d1", "d2", "d3"))), H0, H1, SENSORS)
    store.replace_predictions(scored(windows(H1)), H1, H2, SENSORS)  # another hour stays
    shard_a = scored(windows(H0, devices=("d1",), seed=1), version="v2")
    shard_b = scored(windows(H0, devices=("d2",), seed=2), version="v2")
    assert store.replace_predictions_batches(H0, H1, SENSORS, batches(shard_a, shard_b)) == 2 * 2 * 720
    pd.testing.assert_frame_equal(sort(store.read_predictions(H0, H1)), sort(pd.concat([shard_a, shard_b])),
                                  check_dtype=False)
    assert len(store.read_predictions(H1, H2)) == 2 * 2 * 720
    assert store.prediction_counts(H0, H1, SENSORS) == {"s1": 720 * 2, "s2": 720 * 2}
    assert store.prediction_counts(H0, H1, ["s1", "s9"]) == {"s1": 720 * 2, "s9": 0}


def test_only_the_named_sensors_are_replaced(store):
    store.replace_predictions(scored(windows(H0)), H0, H1, SENSORS)
    s1_again = scored(windows(H0, sensors=("s1",), seed=3), version="v2")
    store.replace_predictions_batches(H0, H1, ["s1"], batches(s1_again))
    stored = store.read_predictions(H0, H1)
    assert stored.groupby("sensor")["model_version"].unique().map(list).to_dict() == {"s1": ["v2"], "s2": ["v1"]}


def test_a_refused_or_failing_batch_leaves_the_previous_rows(store):
    store.replace_predictions(scored(windows(H0)), H0, H1, SENSORS)
    before = sort(store.read_predictions())
    good = scored(windows(H0, devices=("d1",), seed=4), version="v2")
    outside = scored(windows(H1, devices=("d9",)), version="v2")
    with pytest.raises(ValueError, match="1440 of 1440 rows for predictions lie outside"):
        store.replace_predictions_batches(H0, H1, SENSORS, batches(good, outside))
    pd.testing.assert_frame_equal(sort(store.read_predictions()), before)

    def failing():
        yield pa.Table.from_pandas(good, preserve_index=False)
        raise RuntimeError("a part could not be read")

    with pytest.raises(RuntimeError, match="could not be read"):
        store.replace_predictions_batches(H0, H1, SENSORS, failing())
    pd.testing.assert_frame_equal(sort(store.read_predictions()), before)


def test_the_job_side_reads_the_windows_the_run_wrote(store):
    store.replace_sensor_values(windows(H1), H1, H2)
    read = ShardSql(store.url).read_sensor_values(H1, H2, devices=["d2"], sensors=["s1"])
    expected = store.read_sensor_values(H1, H2, devices=["d2"], sensors=["s1"])
    pd.testing.assert_frame_equal(read, expected, check_dtype=False)
    assert store.devices_with_windows(H1, H2, ["s1"]) == ["d1", "d2"]
    assert store.devices_with_windows(H0, H1, ["s1"]) == []
    assert store.devices_with_windows(H1, H2) == ["d1", "d2"]  # any sensor: what silence is judged by
