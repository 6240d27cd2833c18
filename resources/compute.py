"""Where shards are scored: a local process pool by default, Azure ML command jobs on Azure.

A backend receives shard tasks (names: devices, hours, sensors, the run's token) and runs
``scoring.shard_task.run_shard_task`` for each where the data can be read and written; it
returns each shard's summary, never its rows.
"""

from __future__ import annotations

import multiprocessing
from abc import ABC, abstractmethod
from concurrent.futures import ProcessPoolExecutor, as_completed

import dagster as dg

from resources.blob import BlobStore
from resources.lifeline import die_with_parent
from resources.sql import SqlStore
from scoring.shard_task import run_shard_task
from scoring.shards import ShardTask


def portable(resource: dg.ConfigurableResource) -> tuple[type, dict]:
    """A resource as its class and field values, to rebuild in a worker process (a resource bound
    to a run does not pickle)."""
    return type(resource), {name: getattr(resource, name) for name in type(resource).model_fields}


def _run_portable(task: ShardTask, sql: tuple[type, dict], blob: tuple[type, dict]) -> dict:
    (sql_type, sql_fields), (blob_type, blob_fields) = sql, blob
    return run_shard_task(task, sql_type(**sql_fields), blob_type(**blob_fields))


def shard_log_line(summary: dict, done: int, total: int) -> str:
    refused = len(summary["devices_refused"])
    return (f"{summary['shard']}: {summary['devices']} device(s), {summary['rows_scored']} rows scored, "
            f"{summary['anomalies']} anomalies" + (f", {refused} device(s) refused" if refused else "")
            + f" ({done}/{total} shards)")


def shard_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of ``workers`` spawned processes that end with the process that made it, so a killed
    run leaves no orphan scoring its shards (they would hold hundreds of MB for nothing)."""
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=die_with_parent, initargs=(True,))


class ComputeBackend(dg.ConfigurableResource, ABC):
    """Runs shard tasks, each scoring many devices' models and writing their predictions."""

    devices_per_shard: int = 500

    @abstractmethod
    def run_shards(self, context: dg.AssetExecutionContext, tasks: list[ShardTask], sql: SqlStore,
                   blob: BlobStore) -> list[dict]:
        """Run every task; their summaries (``scoring.shard_task.run_shard_task``) in task order."""

    @abstractmethod
    def describe(self) -> str: ...


class LocalComputeBackend(ComputeBackend):
    """A pool of up to ``max_workers`` processes, each reading, scoring and writing one shard at a
    time, so that a worker's memory is bounded by ``devices_per_shard`` and the run's process
    holds no windows or predictions, even for a single shard. ``max_workers=0`` runs the
    shards in the run's own process (debugging)."""

    max_workers: int = 2
    # A worker reads, scores and writes one shard at a time, and the run publishes a shard's rows
    # at a time: 200 devices (~0.7 M windows an hour) keep both a few hundred MB whatever the fleet.
    devices_per_shard: int = 200

    def run_shards(self, context, tasks, sql, blob):
        results: list[dict | None] = [None] * len(tasks)
        if self.max_workers <= 0:
            for i, task in enumerate(tasks):
                results[i] = run_shard_task(task, sql, blob)
                context.log.info(shard_log_line(results[i], i + 1, len(tasks)))
            return results
        if not tasks:
            return results
        with shard_pool(min(self.max_workers, len(tasks))) as pool:
            futures = {pool.submit(_run_portable, task, portable(sql), portable(blob)): i
                       for i, task in enumerate(tasks)}
            try:
                for done, future in enumerate(as_completed(futures), start=1):
                    i = futures[future]
                    results[i] = future.result()
                    context.log.info(shard_log_line(results[i], done, len(tasks)))
            except BaseException:
                for future in futures:
                    future.cancel()  # queued shards need not run once one failed
                raise
        return results

    def describe(self) -> str:
        return f"local process pool ({self.max_workers} workers)" if self.max_workers > 0 else "the run's process"
