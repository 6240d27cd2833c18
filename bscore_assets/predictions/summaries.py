"""A run's per-partition results, merged from what its shards reported (counts, never rows).

A partition's summary is also kept in its manifest (``to_json``), so that a run which finds
the partition's inputs unchanged reports it as it was scored (``from_json``) without scoring.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from scoring.shard_summary import ShardSummary


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
    devices_refused: dict[str, str] = field(default_factory=dict)  # device -> why its model was refused
    parts: list[str] = field(default_factory=list)
    scored: bool = True  # False: reported from its manifest, its inputs unchanged since it was scored

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

    def to_json(self) -> dict:
        """The counts as plain JSON values (the parts are in the manifest already)."""
        return {"windows": self.windows, "rows_scored": self.rows_scored, "anomalies": self.anomalies,
                "devices": self.devices, "model_versions": self.model_versions,
                "devices_with_windows": sorted(self.devices_with_windows),
                "devices_missing_model": self.devices_missing_model, "devices_refused": self.devices_refused}

    @classmethod
    def from_json(cls, hour, sensor: str, data: dict, parts: list[str]) -> "PartitionSummary":
        """A summary ``to_json`` wrote, as reported again by a run that did not score it."""
        return cls(pd.Timestamp(hour), str(sensor), int(data["windows"]), int(data["rows_scored"]),
                   int(data["anomalies"]), {str(d): [int(n), int(a)] for d, (n, a) in data["devices"].items()},
                   dict(data["model_versions"]), set(data["devices_with_windows"]),
                   list(data["devices_missing_model"]), dict(data["devices_refused"]), list(parts), scored=False)


def merge_shard_summaries(shards: list[ShardSummary], hours, sensors
                          ) -> dict[tuple[pd.Timestamp, str], PartitionSummary]:
    """Every (hour, sensor) of the run, with what each shard reported of it added up."""
    merged = {(pd.Timestamp(h), str(s)): PartitionSummary(pd.Timestamp(h), str(s)) for h in hours for s in sensors}
    for shard in shards:
        for part in shard.partitions:
            summary = merged[(pd.Timestamp(part.hour), part.sensor)]
            summary.windows += part.windows
            summary.rows_scored += part.rows_scored
            summary.anomalies += part.anomalies
            summary.devices.update({d: list(counts) for d, counts in part.devices.items()})
            summary.model_versions.update(part.model_versions)
            summary.devices_with_windows.update(part.devices_with_windows)
            summary.devices_missing_model.extend(part.devices_missing_model)
            summary.devices_refused.update({d: shard.devices_refused[d] for d in part.devices_refused})
            if part.part:
                summary.parts.append(part.part)
    for summary in merged.values():
        summary.devices_missing_model.sort()
    return merged


def refused_devices(summaries) -> dict[str, str]:
    """Device -> why its model was refused, over the partitions."""
    return dict(sorted((d, r) for summary in summaries for d, r in summary.devices_refused.items()))


def missing_models(summaries) -> pd.DataFrame:
    """``device, sensor`` pairs with windows and no model, over the partitions."""
    pairs = sorted({(d, s.sensor) for s in summaries for d in s.devices_missing_model})
    return pd.DataFrame(pairs, columns=["device", "sensor"])
