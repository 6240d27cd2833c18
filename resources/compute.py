"""Where shards are scored: a local process pool by default, Azure ML command jobs on Azure.

A backend receives shard tasks (names: a scoring shard's devices, hours, sensors and the run's
token, or a training shard's devices and window) and runs each where the data can be read and
written (``scoring.remote_tasks.run_task``: ``scoring.shard_task`` or ``scoring.training_task``);
it returns each shard's summary, never its rows or models.

A pool worker runs ``resources.shard_worker`` (no Dagster import); its error crosses back as a
``ShardWorkerError`` holding its type, message and traceback as text. A shard that failed on an
outage (``resources.outages``) is run again with back-off, and one that still fails then ends the
run as a ``ConnectionError``, which the asset's retry policy retries.
"""

from __future__ import annotations

import multiprocessing
import time
from abc import ABC, abstractmethod
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import ClassVar

import dagster as dg

from resources.blob import BlobStore, LocalBlobStore
from resources.lifeline import die_with_parent
from resources.shard_worker import AsIs, Rebuilt, ShardWorkerError, SqlUrl, run_shard
from resources.sql import SqlStore
from scoring.remote_tasks import run_task
from scoring.shard_summary import ShardSummary
from scoring.shards import ShardTask
from scoring.training_task import TrainingSummary, TrainingTask


def portable(resource: dg.ConfigurableResource) -> tuple[type, dict]:
    """A resource as its class and field values, to rebuild in a worker process (a resource bound
    to a run does not pickle)."""
    return type(resource), {name: getattr(resource, name) for name in type(resource).model_fields}


class ShardWorkerOutage(ConnectionError):
    """A shard that kept failing on an outage: a ``ConnectionError``, so the step is retried."""

    def __init__(self, error: ShardWorkerError, attempts: int):
        super().__init__(f"{error} (after {attempts} attempt(s))")
        self.error = error


def worker_stores(sql: SqlStore, blob: BlobStore) -> tuple:
    """The run's stores as a pool worker opens them (``resources.shard_worker``): the plain SQL
    store as its URL and the folder store as itself, so the worker never imports Dagster; any
    other store as its resource, rebuilt."""
    sql_store = SqlUrl(sql.url, sql.auth) if type(sql) is SqlStore else Rebuilt(*portable(sql))
    blob_store = AsIs(blob.blobs()) if type(blob) is LocalBlobStore else Rebuilt(*portable(blob))
    return sql_store, blob_store


def shard_log_line(summary: ShardSummary | TrainingSummary, done: int, total: int) -> str:
    return f"{summary.log_line()} ({done}/{total} shards)"


def shard_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of ``workers`` spawned processes that end with the process that made it, so a killed
    run leaves no orphan scoring its shards (they would hold hundreds of MB for nothing)."""
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=die_with_parent, initargs=(True,))


class ComputeBackend(dg.ConfigurableResource, ABC):
    """Runs shard tasks, each scoring many devices' models and writing their predictions, or
    training many devices' models and storing their bundles."""

    devices_per_shard: int = 500
    # Whether the shards stage their predictions in SQL themselves, for the run to publish on the
    # server (remote jobs: no prediction row comes back through the run's process), rather than
    # the run publishing from the blob parts.
    stages_predictions: ClassVar[bool] = False

    @abstractmethod
    def run_shards(self, context: dg.AssetExecutionContext, tasks: list[ShardTask] | list[TrainingTask],
                   sql: SqlStore, blob: BlobStore) -> list[ShardSummary] | list[TrainingSummary]:
        """Run every task; their summaries (``scoring.remote_tasks.run_task``) in task order."""

    @abstractmethod
    def describe(self) -> str: ...


class LocalComputeBackend(ComputeBackend):
    """A pool of up to ``max_workers`` processes, each reading, scoring and writing one shard at a
    time, so that a worker's memory is bounded by ``devices_per_shard`` and the run's process
    holds no windows or predictions, even for a single shard. ``max_workers=0`` runs the
    shards in the run's own process (debugging)."""

    max_workers: int = 2
    shard_retries: int = 3  # a shard failing on an outage runs again up to this many times,
    shard_retry_seconds: float = 1.0  # after 1, 2, 4 ... seconds
    # A worker reads, scores and writes one shard at a time, and the run publishes a shard's rows
    # at a time: 200 devices (~0.7 M windows an hour) keep both a few hundred MB whatever the fleet.
    devices_per_shard: int = 200

    def run_shards(self, context, tasks, sql, blob):
        results: list[ShardSummary | None] = [None] * len(tasks)
        if self.max_workers <= 0:
            for i, task in enumerate(tasks):
                results[i] = run_task(task, sql, blob)
                context.log.info(shard_log_line(results[i], i + 1, len(tasks)))
            return results
        if not tasks:
            return results
        stores = worker_stores(sql, blob)
        with shard_pool(min(self.max_workers, len(tasks))) as pool:
            pending = {pool.submit(run_shard, task, *stores): (i, 1) for i, task in enumerate(tasks)}
            done = 0
            try:
                while pending:
                    finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for future in finished:
                        i, attempt = pending.pop(future)
                        try:
                            results[i] = future.result()
                        except ShardWorkerError as exc:
                            if not exc.transient:
                                raise
                            if attempt > self.shard_retries:
                                raise ShardWorkerOutage(exc, attempt) from None
                            wait_seconds = self.shard_retry_seconds * 2 ** (attempt - 1)
                            context.log.warning(f"shard {exc.shard}: outage ({exc.error_type.rsplit('.', 1)[-1]}: "
                                                f"{exc.message.splitlines()[0][:300] if exc.message else ''}); "
                                                f"retry {attempt} of {self.shard_retries} in {wait_seconds:g}s")
                            time.sleep(wait_seconds)
                            pending[pool.submit(run_shard, tasks[i], *stores)] = (i, attempt + 1)
                            continue
                        done += 1
                        context.log.info(shard_log_line(results[i], done, len(tasks)))
            except BaseException:
                for future in pending:
                    future.cancel()  # queued shards need not run once one failed
                raise
        return results

    def describe(self) -> str:
        return f"local process pool ({self.max_workers} workers)" if self.max_workers > 0 else "the run's process"
