"""Split a scoring job into shards of many models each, never one task per model."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from scoring.model_format import ModelBundle


@dataclass(frozen=True)
class Shard:
    """The windows of a group of devices and those devices' model bundles."""

    label: str
    rows: pd.DataFrame
    bundles: dict[str, ModelBundle]


def plan_shards(rows: pd.DataFrame, bundles: dict[str, ModelBundle], devices_per_shard: int) -> list[Shard]:
    """Group devices into shards of at most ``devices_per_shard`` devices each.

    Devices without a bundle stay in a shard so that their rows are reported as missing
    a model rather than dropped.
    """
    if devices_per_shard < 1:
        raise ValueError(f"devices_per_shard={devices_per_shard} must be at least 1")
    codes, devices = pd.factorize(rows["device"].astype(str), sort=True)
    shard_of_row = codes // devices_per_shard  # devices sorted, so each shard is a run of them
    shards = []
    for number, shard_rows in rows.groupby(shard_of_row, sort=True):
        group = devices[number * devices_per_shard : (number + 1) * devices_per_shard]
        shards.append(
            Shard(
                label=f"shard-{number:04d}",
                rows=shard_rows,
                bundles={d: bundles[d] for d in group if d in bundles},
            )
        )
    return shards
