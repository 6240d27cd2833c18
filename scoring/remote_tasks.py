"""The kinds of task a compute backend runs, by their JSON and their summaries: scoring shards
(``scoring.shard_task``) and training shards (``scoring.training_task``). A local worker and an
Azure ML job run either through ``run_task``; the job tells them apart by the task's JSON."""

from __future__ import annotations

from scoring.shard_summary import ShardSummary
from scoring.shard_task import run_shard_task
from scoring.shards import ShardTask
from scoring.training_task import TrainingSummary, TrainingTask, run_training_task


def run_task(task: ShardTask | TrainingTask, store, blobs) -> ShardSummary | TrainingSummary:
    """Run a scoring or training shard where its data can be read and written; its summary."""
    if isinstance(task, TrainingTask):
        return run_training_task(task, store, blobs)
    if isinstance(task, ShardTask):
        return run_shard_task(task, store, blobs)
    raise TypeError(f"{type(task).__name__} is not a task a compute backend runs")


def task_from_json(data: dict) -> ShardTask | TrainingTask:
    """The task a job received (``to_json`` of either kind)."""
    return TrainingTask.from_json(data) if data.get("task") == "training" else ShardTask.from_json(data)


def summary_from_json(data: dict) -> ShardSummary | TrainingSummary:
    """The summary a job reported (``to_json`` of either kind)."""
    return TrainingSummary.from_json(data) if "outcomes" in data else ShardSummary.from_json(data)
