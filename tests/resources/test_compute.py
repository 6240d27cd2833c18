"""The local process pool: a worker's error reaches the run with its message, and a dropped
connection in a worker is retried (issue 19, item 8)."""

import logging

import pandas as pd
import pytest

from resources.blob import LocalBlobStore
from resources.compute import LocalComputeBackend, ShardWorkerError
from scoring.shards import ShardTask
from tests.resources.failing_stores import BrokenSqlStore, FlakySqlStore
from tests.resources.worker_probe import score_and_list_dagster_modules

HOUR = pd.Timestamp("2026-03-01T01:00")


class _Context:
    log = logging.getLogger("test_compute")


def tasks(n: int) -> list[ShardTask]:
    return [ShardTask(f"shard-{i}", (str(i),), (HOUR,), ("1",), "run1") for i in range(n)]


def test_an_unpicklable_worker_error_reaches_the_run_with_its_message(tmp_path):
    sql = BrokenSqlStore(url=f"sqlite:///{tmp_path / 'db.sqlite'}")
    blob = LocalBlobStore(root=str(tmp_path / "blob"))

    with pytest.raises(ShardWorkerError) as raised:
        LocalComputeBackend(max_workers=2).run_shards(_Context(), tasks(2), sql, blob)

    message = str(raised.value)
    assert "DriverError: relation \"sensor_values\" is corrupt at block 7" in message
    assert raised.value.error_type == "tests.resources.failing_stores.DriverError"
    assert "read_sensor_values" in raised.value.traceback_text and not raised.value.transient


def test_a_dropped_connection_in_a_worker_is_retried(tmp_path):
    sql = FlakySqlStore(url=f"sqlite:///{tmp_path / 'db.sqlite'}", counter=str(tmp_path / "drops"), drops=2)
    blob = LocalBlobStore(root=str(tmp_path / "blob"))

    summaries = LocalComputeBackend(max_workers=2).run_shards(_Context(), tasks(1), sql, blob)

    assert (tmp_path / "drops").read_text() == "2"
    assert [s.shard for s in summaries] == ["shard-0"] and summaries[0].rows_scored == 0


def test_an_outage_that_outlasts_the_retries_fails_as_a_connection_error(tmp_path):
    """So the asset's retry policy (bscore_assets/retries.py) sees an outage and retries the step."""
    sql = FlakySqlStore(url=f"sqlite:///{tmp_path / 'db.sqlite'}", counter=str(tmp_path / "drops"), drops=99)
    blob = LocalBlobStore(root=str(tmp_path / "blob"))

    with pytest.raises(ConnectionError, match="DroppedConnection: server closed the connection unexpectedly"):
        LocalComputeBackend(max_workers=1, shard_retry_seconds=0.01).run_shards(_Context(), tasks(1), sql, blob)


def test_a_pool_worker_scores_the_plain_stores_without_importing_dagster(tmp_path):
    """Each spawned worker paid about 1.2 CPU-s importing Dagster before it read a window."""
    from resources.compute import shard_pool, worker_stores
    from resources.sql import SqlStore

    sql = SqlStore(url=f"sqlite:///{tmp_path / 'db.sqlite'}")
    sql.engine  # creates the tables
    blob = LocalBlobStore(root=str(tmp_path / "blob"))
    with shard_pool(1) as pool:
        summary, dagster_modules = pool.submit(score_and_list_dagster_modules, tasks(1)[0],
                                               *worker_stores(sql, blob)).result()

    assert summary.shard == "shard-0" and summary.rows_scored == 0
    assert dagster_modules == []
