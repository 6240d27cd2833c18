"""Split a scoring run into shards of many devices each, never one task per model.

A shard is named, not filled: its devices, the run's hours and sensors, and the run's token
(which names the prediction parts it writes). Whoever runs it (a local worker, an Azure ML
job) reads the data itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from scoring.model_format import ModelBundle


@dataclass(frozen=True)
class ShardTask:
    """What one shard scores: ``devices`` (sorted) x ``hours`` x ``sensors``; ``run`` names its parts.
    With ``stage_in_sql`` the shard also stages its predictions in SQL under ``run`` (the Azure ML
    jobs), from where the run publishes them on the server."""

    label: str
    devices: tuple[str, ...]
    hours: tuple[pd.Timestamp, ...]
    sensors: tuple[str, ...]
    run: str
    stage_in_sql: bool = False

    def to_json(self) -> dict:
        """The task as plain JSON values (what an Azure ML job receives over Pipes)."""
        return {"label": self.label, "devices": list(self.devices), "hours": [h.isoformat() for h in self.hours],
                "sensors": list(self.sensors), "run": self.run, "stage_in_sql": self.stage_in_sql}

    @classmethod
    def from_json(cls, data: dict) -> "ShardTask":
        return cls(data["label"], tuple(data["devices"]), tuple(pd.Timestamp(h) for h in data["hours"]),
                   tuple(data["sensors"]), data["run"], bool(data.get("stage_in_sql", False)))


def plan_shards(devices, hours, sensors, devices_per_shard: int, run: str,
                stage_in_sql: bool = False) -> list[ShardTask]:
    """Group the devices, sorted, into shards of at most ``devices_per_shard`` each.

    Parameters
    ----------
    devices : iterable of str
        Devices with windows in the run's hours and sensors (with or without a model, so
        that those without one are reported rather than dropped).
    hours, sensors : sequences
        The run's hours and sensors; every shard covers all of them.
    devices_per_shard : int
        Shard size: bounds each task's memory.
    run : str
        A token of the run (``scoring.prediction_layout.run_token``), in its parts' names.
    stage_in_sql : bool
        Whether the shards stage their predictions in SQL themselves (``ShardTask``).
    """
    if devices_per_shard < 1:
        raise ValueError(f"devices_per_shard={devices_per_shard} must be at least 1")
    ordered = sorted(set(map(str, devices)))
    hours, sensors = tuple(pd.Timestamp(h) for h in sorted(hours)), tuple(map(str, sensors))
    return [ShardTask(f"shard-{n:04d}", tuple(ordered[i:i + devices_per_shard]), hours, sensors, run, stage_in_sql)
            for n, i in enumerate(range(0, len(ordered), devices_per_shard))]


@dataclass(frozen=True)
class Shard:
    """A shard's windows and its devices' bundles, in memory (tests and benchmarks of the scorer)."""

    label: str
    rows: pd.DataFrame
    bundles: dict[str, ModelBundle]
