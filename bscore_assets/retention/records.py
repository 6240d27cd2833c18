"""What retention remembers in blob storage: the hours it retired, and when it first saw a key.

``retention/retired.json`` holds, per hourly kind (raw, prediction, sql), the first hour still
kept: every earlier hour's data of that kind was removed. A run of such an hour would read
nothing and publish empty aggregates or predictions, so the assets refuse it by name
(:func:`refuse_retired_hours`). ``retention/sightings.json`` holds when retention first saw a
dead letter or an orphan: their names carry no time, and the blob interface no dates.
"""

from __future__ import annotations

import json

import dagster as dg
import pandas as pd

from resources.blob import BlobStore

RETIRED_KEY = "retention/retired.json"
SIGHTINGS_KEY = "retention/sightings.json"
HOUR_FORMAT = "%Y-%m-%dT%H"
# Which hourly kind each asset's run reads or overwrites, so a retired hour is refused.
READS = {
    "raw_readings": ("raw",),
    "sensor_aggregates": ("raw", "sql"),
    "sensor_predictions": ("sql", "prediction"),
    "device_verdicts": ("prediction", "sql"),
}


def _read_json(blob: BlobStore, key: str) -> dict:
    if not blob.exists(key):
        return {}
    try:
        return json.loads(blob.read_bytes(key))
    except ValueError as exc:
        raise ValueError(f"blob {key} is not the JSON retention writes ({exc}); restore or delete it") from None


def retired_before(blob: BlobStore) -> dict[str, pd.Timestamp]:
    """Per hourly kind, the first hour kept (earlier hours were removed)."""
    return {kind: pd.Timestamp(hour) for kind, hour in _read_json(blob, RETIRED_KEY).items()}


def record_retired(blob: BlobStore, cutoffs: dict[str, pd.Timestamp]) -> None:
    """Record that every hour before ``cutoffs[kind]`` of each kind is gone (never moving back)."""
    merged = retired_before(blob)
    for kind, hour in cutoffs.items():
        merged[kind] = max(pd.Timestamp(hour), merged.get(kind, pd.Timestamp(hour)))
    blob.write_bytes(RETIRED_KEY, json.dumps({k: f"{v:{HOUR_FORMAT}}" for k, v in sorted(merged.items())}).encode())


def retired_hours(blob: BlobStore, asset: str, hours) -> dict[pd.Timestamp, str]:
    """Those of ``hours`` whose data ``asset`` needs was retired, with the kind removed."""
    cutoffs = retired_before(blob)
    found = {}
    for hour in hours:
        for kind in READS.get(asset, ()):
            if kind in cutoffs and pd.Timestamp(hour) < cutoffs[kind]:
                found[pd.Timestamp(hour)] = kind
                break
    return found


def refuse_retired_hours(blob: BlobStore, asset: str, hours) -> None:
    """Fail the run, naming the hours, when any of ``hours`` was retired for ``asset``."""
    found = retired_hours(blob, asset, hours)
    if found:
        named = ", ".join(f"{hour:{HOUR_FORMAT}} ({kind} removed)" for hour, kind in sorted(found.items()))
        raise dg.Failure(description=f"{asset}: hour(s) {named} were retired by retention (see {RETIRED_KEY}); "
                                     "running them again would publish empty results. Choose later hours, or "
                                     "restore the data and edit the record.", allow_retries=False)


def sightings(blob: BlobStore) -> dict[str, pd.Timestamp]:
    """When retention first saw each key it waits on (dead letters, orphans)."""
    return {key: pd.Timestamp(seen) for key, seen in _read_json(blob, SIGHTINGS_KEY).items()}


def write_sightings(blob: BlobStore, seen: dict[str, pd.Timestamp]) -> None:
    blob.write_bytes(SIGHTINGS_KEY, json.dumps({k: v.isoformat() for k, v in sorted(seen.items())}).encode())
