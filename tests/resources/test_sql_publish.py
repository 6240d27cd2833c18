"""Predictions published from Arrow batches (the shards' parts) in one transaction per hour:
what the batches hold replaces the hour's sensors, and a refused or failing batch leaves the
previous rows; or staged by the Azure ML jobs themselves (``scoring.shard_sql.ShardSql``, no
Dagster) and published by the run on the server. On SQLite and the local PostgreSQL (the
``store`` fixture of ``test_sql``).
"""

import pandas as pd
import sqlalchemy as sa
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


def staged_rows(store, run=None) -> int:
    from resources.sql import prediction_staging

    query = sa.select(sa.func.count()).select_from(prediction_staging)
    if run is not None:
        query = query.where(prediction_staging.c.run == run)
    with store.engine.connect() as conn:
        return conn.execute(query).scalar_one()


def test_jobs_stage_and_the_run_publishes_the_hour_on_the_server(store):
    store.replace_predictions(scored(windows(H0, devices=("d1", "d2", "d3"))), H0, H1, SENSORS)
    store.replace_predictions(scored(windows(H1)), H1, H2, SENSORS)  # another hour stays
    job = ShardSql(store.url)  # what an Azure ML job opens: no Dagster, the tables reflected
    shard_a = scored(windows(H0, devices=("d1",), seed=1), version="v2")
    shard_b = scored(windows(H0, devices=("d2",), seed=2), version="v2")
    assert job.stage_predictions("run-a", ["d1"], H0, H1, [shard_a[shard_a.sensor == s] for s in SENSORS]) == 1440
    # A shard run again (a preempted node) replaces what its first attempt staged, never adds to it.
    job.stage_predictions("run-a", ["d1"], H0, H1, [shard_a])
    job.stage_predictions("run-a", ["d2"], H0, H1, [shard_b])
    job.stage_predictions("run-b", ["d2"], H0, H1, [shard_b])  # another run's rows are its own
    assert (staged_rows(store, "run-a"), staged_rows(store, "run-b")) == (2880, 1440)

    assert store.publish_staged_predictions("run-a", H0, H1, {"s1": 1440, "s2": 1440}) == 2880

    pd.testing.assert_frame_equal(sort(store.read_predictions(H0, H1)), sort(pd.concat([shard_a, shard_b])),
                                  check_dtype=False)
    assert len(store.read_predictions(H1, H2)) == 2 * 2 * 720
    assert (staged_rows(store, "run-a"), staged_rows(store, "run-b")) == (0, 1440)


def test_a_publish_whose_staged_rows_differ_from_the_reports_keeps_the_previous_hour(store):
    store.replace_predictions(scored(windows(H0)), H0, H1, SENSORS)
    before = sort(store.read_predictions())
    shard = scored(windows(H0, devices=("d1",), seed=5), version="v2")
    ShardSql(store.url).stage_predictions("run-c", ["d1"], H0, H1, [shard])
    with pytest.raises(RuntimeError, match=r"run run-c.*s1: 720, 721, s2: 720, 0"):
        store.publish_staged_predictions("run-c", H0, H1, {"s1": 721, "s2": 0})
    pd.testing.assert_frame_equal(sort(store.read_predictions()), before)
    assert staged_rows(store, "run-c") == 1440  # nothing moved: the run's failure discards them
    store.discard_staged_predictions("run-c")
    assert staged_rows(store, "run-c") == 0


def test_rows_a_dead_run_staged_are_dropped_by_a_later_publish_once_stale(store):
    from resources.sql import STALE_STAGING, prediction_staging

    store.engine  # the run's store creates the tables before any job runs
    job = ShardSql(store.url)
    job.stage_predictions("dead-run", ["d1"], H0, H1, [scored(windows(H0, devices=("d1",)))])
    job.stage_predictions("live-run", ["d2"], H1, H2, [scored(windows(H1, devices=("d2",)))])
    with store.engine.begin() as conn:  # the dead run's host died that long ago
        conn.execute(prediction_staging.update().where(prediction_staging.c.run == "dead-run")
                     .values(staged_at=pd.Timestamp.now() - STALE_STAGING - pd.Timedelta(hours=1)))
    job.stage_predictions("run-d", ["d1"], H0, H1, [scored(windows(H0, devices=("d1",)))])
    store.publish_staged_predictions("run-d", H0, H1, {"s1": 720, "s2": 720})
    assert (staged_rows(store, "dead-run"), staged_rows(store, "live-run"), staged_rows(store)) == (0, 1440, 1440)


def test_a_job_stages_into_azure_sql_a_batch_of_rows_a_round_trip():
    job = ShardSql("mssql+pyodbc://bscore-sql.database.windows.net/bscore?driver=ODBC+Driver+18+for+SQL+Server",
                   "entra")
    assert job.engine.dialect.fast_executemany  # as the run's own store (resources.sql.engine_options)
