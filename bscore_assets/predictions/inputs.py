"""What an hour's predictions are scored from, as one version, and the partitions that need no
scoring because their version is what they were scored from.

The version of an hour covers the hour's aggregates (the raw content version and counts their
latest materialization recorded) and every device's current model version. A partition whose
manifest names that version, and whose rows SQL still holds, is reported from its manifest:
scoring it again would write the same rows.
"""

from __future__ import annotations

import hashlib
import json

import dagster as dg
import pandas as pd

from bscore_assets.hours import latest_partition_metadata
from bscore_assets.partitions import hour_key
from bscore_assets.predictions.summaries import PartitionSummary
from resources.blob import BlobStore
from resources.sql import SqlStore
from scoring.model_store import current_versions
from scoring.prediction_layout import read_manifest
from scoring.time_units import HOUR

AGGREGATE_FIELDS = ("raw_version", "window_seconds", "windows", "readings")


def _digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]


def scoring_inputs(instance: dg.DagsterInstance, blob: BlobStore, hours) -> dict[pd.Timestamp, str | None]:
    """Each hour's inputs version; None when no ``sensor_aggregates`` run recorded the hour's raw
    version (e.g. Stream Analytics aggregates it), so that it is always scored."""
    aggregates = latest_partition_metadata(instance, "sensor_aggregates", [hour_key(h) for h in hours])
    models = _digest(sorted(current_versions(blob).items()))
    versions = {}
    for hour in hours:
        recorded = aggregates.get(hour_key(hour), {})
        versions[hour] = (_digest([[recorded.get(f) for f in AGGREGATE_FIELDS], models])
                          if recorded.get("raw_version") else None)
    return versions


def unchanged_partitions(blob: BlobStore, sql: SqlStore, hour: pd.Timestamp, sensors: list[str],
                         version: str | None) -> dict[str, PartitionSummary] | None:
    """The hour's partitions as their manifests report them, when every one of ``sensors`` was
    scored from ``version`` and SQL holds its rows; None when the hour must be scored."""
    if version is None:
        return None
    manifests = {sensor: read_manifest(blob, hour, sensor) for sensor in sensors}
    if any(m is None or m.get("inputs") != version or m.get("summary") is None for m in manifests.values()):
        return None
    stored = sql.prediction_counts(hour, hour + HOUR, sensors)
    if any(stored[sensor] != manifest["rows"] for sensor, manifest in manifests.items()):
        return None
    return {sensor: PartitionSummary.from_json(hour, sensor, m["summary"], m["parts"]) for sensor, m in manifests.items()}
