"""Hours as Dagster records them: which are aggregated (and when), what their latest
materialization said, and contiguous blocks of them for ranged runs. (When an hour is ready is
decided by the automation conditions beside each asset, built from ``bscore_assets.automation``.)
"""

from __future__ import annotations

import dagster as dg
import pandas as pd

from bscore_assets.partitions import hour_of_key
from scoring.time_units import HOUR


def hour_blocks(hours) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """Runs of consecutive hours, as ``(first, last)``, in order."""
    blocks: list[list[pd.Timestamp]] = []
    for hour in sorted(set(pd.Timestamp(h) for h in hours)):
        if blocks and hour - blocks[-1][1] == HOUR:
            blocks[-1][1] = hour
        else:
            blocks.append([hour, hour])
    return [(first, last) for first, last in blocks]


def latest_materializations(instance: dg.DagsterInstance, asset: str) -> dict[str, int]:
    """Storage id of the latest materialization of each partition of ``asset`` (a later id is newer)."""
    return dict(instance.get_latest_storage_id_by_partition(
        dg.AssetKey(asset), dg.DagsterEventType.ASSET_MATERIALIZATION))


def aggregated_hours(instance: dg.DagsterInstance) -> dict[pd.Timestamp, int]:
    """Hours whose ``sensor_aggregates`` are materialized, with the storage id of the latest."""
    return {hour_of_key(key): sid for key, sid in latest_materializations(instance, "sensor_aggregates").items()}


def latest_partition_metadata(instance: dg.DagsterInstance, asset: str, partition_keys) -> dict[str, dict]:
    """The metadata of each partition's latest materialization (as plain values), for the given keys.

    Dagster's record is the record: what a run decided about a partition (its raw content
    version, a model version) is read back from here rather than from markers of our own.
    """
    latest = latest_materializations(instance, asset)
    storage_ids = [latest[key] for key in partition_keys if key in latest]
    found: dict[str, dict] = {}
    for start in range(0, len(storage_ids), 500):
        chunk = storage_ids[start:start + 500]
        result = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), storage_ids=chunk), limit=len(chunk))
        for record in result.records:
            materialization = record.asset_materialization
            found[materialization.partition] = {k: v.value for k, v in materialization.metadata.items()}
    return found
