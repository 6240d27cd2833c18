"""Split a scoring job into shards of many models each, never one task per model."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from scoring.model_format import ModelBundle


@dataclass(frozen=True)
class Shard:
    """The windows of a group of devices and those devices' model bundles."""

    label: str
    rows: pd.DataFrame
    bundles: dict[str, ModelBundle]

    @property
    def n_models(self) -> int:
        sensors = set(self.rows["sensor"].unique())
        return sum(len(sensors & set(b.models)) for b in self.bundles.values())


def plan_shards(rows: pd.DataFrame, bundles: dict[str, ModelBundle], devices_per_shard: int) -> list[Shard]:
    """Group devices into shards of at most ``devices_per_shard`` devices each.

    Devices without a bundle stay in a shard so that their rows are reported as missing
    a model rather than dropped.
    """
    if devices_per_shard < 1:
        raise ValueError(f"devices_per_shard={devices_per_shard} must be at least 1")
    devices = np.array(sorted(rows["device"].astype(str).unique()), dtype=object)
    shards = []
    for number, start in enumerate(range(0, len(devices), devices_per_shard)):
        group = set(devices[start : start + devices_per_shard])
        shards.append(
            Shard(
                label=f"shard-{number:04d}",
                rows=rows[rows["device"].astype(str).isin(group)],
                bundles={d: bundles[d] for d in group if d in bundles},
            )
        )
    return shards
