"""One training shard, run where its data is: read its devices' windows, train, store the bundles.

Training is sharded as scoring is (``scoring.shards``): the run names a shard's devices, the
training window, the hold-out hour and the options (``TrainingTask``); the task, in a local
worker process or an Azure ML job, reads its devices' windows a slice of devices at a time
(memory bounded by ``devices_per_read`` devices' windows whatever the shard or the window),
loads their current bundles (a bundle that does not load is reported, and the device trains
without a champion), trains each device behind the gate (``scoring.device_training``) and
stores every promoted bundle under its new version, not yet current. It returns each device's
outcome without its bundle (``TrainingSummary``); the run makes the versions current only once
the materialization naming them is stored, so a failed run leaves no new current model.

No Dagster here: ``store`` is anything with ``read_sensor_values(start, end, devices=)``;
``blobs`` has the model store's protocol.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pandas as pd

from scoring.detectors import FitOptions, SvmParams
from scoring.device_training import GateLimits, train_devices
from scoring.model_store import load_current_bundles_or_refusals, save_bundle
from scoring.training_outcome import TrainingOutcome

# Windows a worker holds at once: 200 device-hours (~0.7 M windows at 5 sensors), as a scoring shard.
DEVICE_HOURS_PER_READ = 200


@dataclass(frozen=True)
class TrainingTask:
    """What one training shard trains: ``devices`` (sorted) on the windows in ``[start, end)``,
    the last hour from ``holdout_start`` held out, with the kind, budget and gate limits."""

    label: str
    devices: tuple[str, ...]
    start: pd.Timestamp
    end: pd.Timestamp
    holdout_start: pd.Timestamp
    kind: str
    select: bool
    options: FitOptions
    limits: GateLimits
    devices_per_read: int = 200

    def to_json(self) -> dict:
        """The task as plain JSON values (what an Azure ML job receives over Pipes)."""
        return {"task": "training", "label": self.label, "devices": list(self.devices),
                "start": self.start.isoformat(), "end": self.end.isoformat(),
                "holdout_start": self.holdout_start.isoformat(), "kind": self.kind, "select": self.select,
                "false_alarm_rate": self.options.false_alarm_rate, "min_samples": self.options.min_samples,
                "svm": vars(self.options.svm), "anomaly_rate_warn": self.limits.anomaly_rate_warn,
                "device_anomaly_rate_warn": self.limits.device_anomaly_rate_warn,
                "devices_per_read": self.devices_per_read}

    @classmethod
    def from_json(cls, data: dict) -> "TrainingTask":
        if data.get("task") != "training":
            raise ValueError(f"not a training task: task={data.get('task')!r}")
        options = FitOptions(false_alarm_rate=float(data["false_alarm_rate"]), min_samples=int(data["min_samples"]),
                             svm=SvmParams(**data["svm"]))
        return cls(data["label"], tuple(map(str, data["devices"])), pd.Timestamp(data["start"]),
                   pd.Timestamp(data["end"]), pd.Timestamp(data["holdout_start"]), data["kind"], bool(data["select"]),
                   options, GateLimits(float(data["anomaly_rate_warn"]), float(data["device_anomaly_rate_warn"])),
                   int(data["devices_per_read"]))


def plan_training_shards(devices, start: pd.Timestamp, end: pd.Timestamp, holdout_start: pd.Timestamp, kind: str,
                         select: bool, options: FitOptions, limits: GateLimits, devices_per_shard: int
                         ) -> list[TrainingTask]:
    """Group the devices, sorted, into tasks of at most ``devices_per_shard`` each; each task reads
    ``DEVICE_HOURS_PER_READ`` device-hours of windows at a time."""
    if devices_per_shard < 1:
        raise ValueError(f"devices_per_shard={devices_per_shard} must be at least 1")
    ordered = sorted(set(map(str, devices)))
    hours = max(1, int((end - start) / pd.Timedelta(hours=1)))
    per_read = max(1, DEVICE_HOURS_PER_READ // hours)
    return [TrainingTask(f"training-{n:04d}", tuple(ordered[i:i + devices_per_shard]), start, end, holdout_start,
                         kind, select, options, limits, per_read)
            for n, i in enumerate(range(0, len(ordered), devices_per_shard))]


@dataclass(frozen=True)
class TrainingSummary:
    """What one training shard did: each device's outcome (its bundle stored, not in here), the
    devices whose current bundle did not load (trained without a champion), and timings."""

    shard: str
    outcomes: dict[str, dict]  # device -> TrainingOutcome.metadata() plus its new "version" (or None)
    champions: dict[str, str]  # device -> its current version when training began
    unreadable: dict[str, str] = field(default_factory=dict)  # device -> why its current bundle did not load
    read_seconds: float = 0.0
    train_seconds: float = 0.0

    @property
    def devices_refused(self) -> dict[str, str]:
        """Devices whose training failed, with why (what a job logs as errors)."""
        return {d: o["reason"] for d, o in self.outcomes.items() if o["status"] == "refused"}

    def outcome(self, device: str) -> tuple[TrainingOutcome, str | None]:
        """The device's outcome and its new version (None when none was promoted)."""
        data = dict(self.outcomes[device])
        version = data.pop("version")
        return TrainingOutcome.from_metadata(data), version

    def totals(self) -> dict:
        """Counts and timings (a job's line in run metadata)."""
        statuses = [o["status"] for o in self.outcomes.values()]
        return {"shard": self.shard, "devices": len(self.outcomes), "promoted": statuses.count("promoted"),
                "refused": statuses.count("refused"), "no_model": statuses.count("no model"),
                "read_seconds": self.read_seconds, "train_seconds": self.train_seconds}

    def log_line(self) -> str:
        t = self.totals()
        return (f"{self.shard}: {t['devices']} device(s) trained, {t['promoted']} promoted, "
                f"{t['refused']} refused, {t['no_model']} without a model")

    def to_json(self) -> dict:
        """Plain JSON values (what an Azure ML job reports over Pipes)."""
        return {"shard": self.shard, "outcomes": self.outcomes, "champions": self.champions,
                "unreadable": self.unreadable, "read_seconds": self.read_seconds,
                "train_seconds": self.train_seconds}

    @classmethod
    def from_json(cls, data: dict) -> "TrainingSummary":
        return cls(data["shard"], dict(data["outcomes"]), dict(data["champions"]), dict(data["unreadable"]),
                   float(data["read_seconds"]), float(data["train_seconds"]))


def run_training_task(task: TrainingTask, store, blobs) -> TrainingSummary:
    """Train the devices ``task`` names and store their promoted bundles (not current); return
    its summary. A device without windows gets the ``no model`` outcome."""
    outcomes: dict[str, dict] = {}
    champions_seen: dict[str, str] = {}
    unreadable: dict[str, str] = {}
    read_seconds = train_seconds = 0.0
    step = max(1, task.devices_per_read)
    for i in range(0, len(task.devices), step):
        devices = list(task.devices[i:i + step])
        started = time.perf_counter()
        windows = store.read_sensor_values(task.start, task.end, devices=devices)
        champions, refused = load_current_bundles_or_refusals(blobs, devices)
        read = time.perf_counter()
        unreadable.update(refused)
        champions_seen.update({d: b.version for d, b in champions.items()})
        by_device = dict(tuple(windows.groupby("device", sort=False, observed=True))) if len(windows) else {}
        trained = train_devices({str(d): rows for d, rows in by_device.items()}, champions, task.holdout_start,
                                task.options, task.kind, task.select, task.limits)
        for device in devices:
            outcome = trained.get(device) or TrainingOutcome()
            if outcome.bundle is not None:
                save_bundle(blobs, outcome.bundle, make_current=False)
            outcomes[device] = {**outcome.metadata(),
                                "version": outcome.bundle.version if outcome.bundle is not None else None}
        read_seconds += read - started
        train_seconds += time.perf_counter() - read
    return TrainingSummary(task.label, outcomes, champions_seen, unreadable, round(read_seconds, 3),
                           round(train_seconds, 3))
