"""What a scoring shard reports: typed records, counts never rows.

A shard (``scoring.shard_task.run_shard_task``) returns a ``ShardSummary`` with one
``ShardPartition`` per (hour, sensor) it covered; the local backend hands it back from a
worker process, an Azure ML job sends it over Dagster Pipes as JSON (``to_json`` /
``from_json``), and the run merges the partitions (``bscore_assets.predictions.summaries``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd


@dataclass(frozen=True)
class ShardPartition:
    """One shard's share of one (hour, sensor) partition."""

    hour: pd.Timestamp
    sensor: str
    windows: int
    rows_scored: int
    anomalies: int
    devices: dict[str, tuple[int, int]]  # device -> (rows scored, anomalies)
    model_versions: dict[str, str]  # device -> the version that scored it
    devices_with_windows: tuple[str, ...]
    devices_missing_model: tuple[str, ...]
    devices_refused: tuple[str, ...]  # the reasons are the shard's (``ShardSummary.devices_refused``)
    part: str | None  # the blob part holding its predictions; None when it scored none

    def to_json(self) -> dict:
        return {"hour": pd.Timestamp(self.hour).isoformat(), "sensor": self.sensor, "windows": self.windows,
                "rows_scored": self.rows_scored, "anomalies": self.anomalies,
                "devices": {d: list(counts) for d, counts in self.devices.items()},
                "model_versions": dict(self.model_versions), "devices_with_windows": list(self.devices_with_windows),
                "devices_missing_model": list(self.devices_missing_model),
                "devices_refused": list(self.devices_refused), "part": self.part}

    @classmethod
    def from_json(cls, data: dict) -> "ShardPartition":
        return cls(pd.Timestamp(data["hour"]), str(data["sensor"]), int(data["windows"]), int(data["rows_scored"]),
                   int(data["anomalies"]), {str(d): (int(n), int(a)) for d, (n, a) in data["devices"].items()},
                   {str(d): str(v) for d, v in data["model_versions"].items()},
                   tuple(map(str, data["devices_with_windows"])), tuple(map(str, data["devices_missing_model"])),
                   tuple(map(str, data["devices_refused"])), data["part"])


@dataclass(frozen=True)
class ShardTimings:
    """Seconds a shard spent reading windows, loading bundles, scoring and writing parts."""

    read_seconds: float = 0.0
    load_seconds: float = 0.0
    score_seconds: float = 0.0
    write_seconds: float = 0.0


@dataclass(frozen=True)
class ShardSummary:
    """What one shard did: totals, its partitions, the devices refused (with why) and the
    (device, sensor) series without a model."""

    shard: str
    devices: int
    rows: int
    rows_scored: int
    anomalies: int
    models: int
    partitions: tuple[ShardPartition, ...]
    devices_refused: dict[str, str] = field(default_factory=dict)  # device -> why its model was refused
    missing_models: tuple[tuple[str, str, int], ...] = ()  # (device, sensor, rows) without a model
    timings: ShardTimings = ShardTimings()

    def totals(self) -> dict:
        """The counts and timings, without partitions and series (a job's line in run metadata)."""
        return {"shard": self.shard, "devices": self.devices, "rows": self.rows, "rows_scored": self.rows_scored,
                "anomalies": self.anomalies, "models": self.models, "devices_refused": dict(self.devices_refused),
                **vars(self.timings)}

    def log_line(self) -> str:
        refused = len(self.devices_refused)
        return (f"{self.shard}: {self.devices} device(s), {self.rows_scored} rows scored, {self.anomalies} anomalies"
                + (f", {refused} device(s) refused" if refused else ""))

    def to_json(self) -> dict:
        """Plain JSON values (what an Azure ML job reports over Pipes)."""
        return {**self.totals(), "partitions": [p.to_json() for p in self.partitions],
                "missing_models": [list(m) for m in self.missing_models]}

    @classmethod
    def from_json(cls, data: dict) -> "ShardSummary":
        """A summary ``to_json`` wrote; a message that is not one raises ``ValueError`` naming what is missing."""
        missing = [name for name in ("shard", "devices", "rows", "rows_scored", "anomalies", "models", "partitions")
                   if name not in data]
        if missing:
            raise ValueError(f"a shard summary needs {', '.join(missing)}; got keys {sorted(data)}")
        timings = ShardTimings(**{k: float(data.get(k, 0.0)) for k in vars(ShardTimings())})
        return cls(str(data["shard"]), int(data["devices"]), int(data["rows"]), int(data["rows_scored"]),
                   int(data["anomalies"]), int(data["models"]),
                   tuple(ShardPartition.from_json(p) for p in data["partitions"]),
                   {str(d): str(r) for d, r in data.get("devices_refused", {}).items()},
                   tuple((str(d), str(s), int(n)) for d, s, n in data.get("missing_models", [])), timings)
