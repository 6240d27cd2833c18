"""A local pool worker's side of a shard, without Dagster: rebuild the stores, score, report.

A spawned worker imports what the function it runs lives beside. Here that is ``scoring`` and
SQLAlchemy: Dagster, which ``resources.compute`` needs, cost each worker about 1.2 CPU-seconds
to import before it read a window, in every scoring run. The run's plain stores cross as what
the Azure ML job opens too (``scoring.shard_sql.ShardSql`` on the SQL URL, the folder store as
itself); any other store (a subclass, a cloud blob store) crosses as its resource's class and
fields and is rebuilt as the run built it, which imports its module.

A worker's error crosses back as a ``ShardWorkerError`` holding its type, message and
traceback as text (a database driver's own exception often does not pickle, and the run then
learnt only ``_RemoteTraceback``).
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass

from scoring.remote_tasks import run_task
from scoring.shard_summary import ShardSummary
from scoring.shards import ShardTask
from scoring.training_task import TrainingSummary, TrainingTask


class ShardWorkerError(Exception):
    """A shard's error in a worker process, as text, so that it always pickles back to the run."""

    def __init__(self, shard: str, error_type: str, message: str, traceback_text: str, transient: bool):
        super().__init__(shard, error_type, message, traceback_text, transient)
        self.shard, self.error_type, self.message = shard, error_type, message
        self.traceback_text, self.transient = traceback_text, transient

    @classmethod
    def of(cls, shard: str, exc: BaseException) -> "ShardWorkerError":
        from resources.outages import is_outage  # the Azure SDKs' exceptions: only once a shard failed

        kind = type(exc)
        return cls(shard, f"{kind.__module__}.{kind.__qualname__}", str(exc),
                   "".join(traceback.format_exception(exc)), is_outage(exc))

    def __str__(self) -> str:
        return (f"shard {self.shard} failed in its worker process: {self.error_type.rsplit('.', 1)[-1]}: "
                f"{self.message}\n--- worker traceback ---\n{self.traceback_text}")


@dataclass(frozen=True)
class SqlUrl:
    """The run's SQL store as its URL and sign-in: read through ``ShardSql``, one engine a worker."""

    url: str
    auth: str = "password"

    def open(self):
        from scoring.shard_sql import ShardSql

        key = (self.url, self.auth)
        if key not in _ENGINES:
            _ENGINES[key] = ShardSql(self.url, self.auth)
        return _ENGINES[key]


@dataclass(frozen=True)
class Rebuilt:
    """A store that crosses as its class and fields (imports the class's module in the worker)."""

    kind: type
    fields: dict

    def open(self):
        return self.kind(**self.fields)


@dataclass(frozen=True)
class AsIs:
    """A store that pickles as itself (``scoring.blobs.FolderBlobs``)."""

    store: object

    def open(self):
        return self.store


_ENGINES: dict = {}  # a worker scores several shards of a run: one connection pool for them


def run_shard(task: ShardTask | TrainingTask, sql, blob) -> ShardSummary | TrainingSummary:
    """Score or train ``task`` with the stores ``sql`` and ``blob`` open (each one of the classes above)."""
    try:
        return run_task(task, sql.open(), blob.open())
    except Exception as exc:
        raise ShardWorkerError.of(task.label, exc) from None
