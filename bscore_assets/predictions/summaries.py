"""A run's per-partition results, merged from what its shards reported (counts, never rows)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd


@dataclass
class PartitionSummary:
    """One (hour, sensor) partition over every shard of a run."""

    hour: pd.Timestamp
    sensor: str
    windows: int = 0
    rows_scored: int = 0
    anomalies: int = 0
    devices: dict[str, list[int]] = field(default_factory=dict)  # device -> [rows, anomalies]
    model_versions: dict[str, str] = field(default_factory=dict)
    devices_with_windows: set[str] = field(default_factory=set)
    devices_missing_model: list[str] = field(default_factory=list)
    parts: list[str] = field(default_factory=list)

    @property
    def anomaly_rate(self) -> float:
        return self.anomalies / self.rows_scored if self.rows_scored else 0.0

    def device_rates(self) -> pd.Series:
        """Anomaly rate per scored device, highest first (ties by device id)."""
        if not self.devices:
            return pd.Series(dtype=float)
        frame = pd.DataFrame([(d, a / n) for d, (n, a) in self.devices.items()], columns=["device", "rate"])
        frame = frame.sort_values(["rate", "device"], ascending=[False, True])
        return pd.Series(frame["rate"].to_numpy(), index=frame["device"].to_numpy())

    def worst_devices(self, limit: int) -> list[str]:
        """The ``limit`` devices with the most anomalies (ties by device id), as the plot draws."""
        ranked = sorted(self.devices.items(), key=lambda item: (-item[1][1], item[0]))
        return [device for device, _ in ranked[:limit]]


def merge_shard_summaries(shards: list[dict], hours, sensors) -> dict[tuple[pd.Timestamp, str], PartitionSummary]:
    """Every (hour, sensor) of the run, with what each shard reported of it added up."""
    merged = {(pd.Timestamp(h), str(s)): PartitionSummary(pd.Timestamp(h), str(s)) for h in hours for s in sensors}
    for shard in shards:
        for part in shard["partitions"]:
            summary = merged[(pd.Timestamp(part["hour"]), part["sensor"])]
            summary.windows += part["windows"]
            summary.rows_scored += part["rows_scored"]
            summary.anomalies += part["anomalies"]
            summary.devices.update(part["devices"])
            summary.model_versions.update(part["model_versions"])
            summary.devices_with_windows.update(part["devices_with_windows"])
            summary.devices_missing_model.extend(part["devices_missing_model"])
            if part["part"]:
                summary.parts.append(part["part"])
    for summary in merged.values():
        summary.devices_missing_model.sort()
    return merged


def refused_devices(shards: list[dict]) -> dict[str, str]:
    return dict(sorted((d, r) for shard in shards for d, r in shard["devices_refused"].items()))


def missing_models(shards: list[dict]) -> pd.DataFrame:
    """``device, sensor, rows`` without a model, over every shard."""
    rows = [row for shard in shards for row in shard["missing_models"]]
    return pd.DataFrame(rows, columns=["device", "sensor", "rows"])
