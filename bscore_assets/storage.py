"""Where each asset's data lives in blob storage: one function per path, used by every reader
and writer of it."""

from __future__ import annotations

import hashlib

import pandas as pd

from resources.blob import BlobStore
from scoring.prediction_layout import (
    BLOB_HOUR_FORMAT,
    manifest_bytes,
    prediction_manifest_key,
    read_manifest,
)
from scoring.raw_parts import read_raw_parts
from scoring.readings import empty_readings


def raw_prefix(hour: pd.Timestamp) -> str:
    return f"raw/{hour:{BLOB_HOUR_FORMAT}}/"


def raw_part_key(hour: pd.Timestamp, digest: str, rows: int) -> str:
    """A raw part named by its content (and row count), so the same readings always land under
    the same name, whichever landing, hub or re-delivery brought them."""
    return f"{raw_prefix(hour)}part-{digest}-{rows}.parquet"


def raw_parts(blob: BlobStore, hour: pd.Timestamp) -> list[str]:
    return [key for key in blob.list(raw_prefix(hour)) if key.endswith(".parquet")]


def part_rows(key: str) -> int:
    """The row count a raw part's name records."""
    return int(key.rsplit("-", 1)[1].removesuffix(".parquet"))


def raw_version(part_keys: list[str]) -> str:
    """Names an hour's raw content: parts are named by content, so the set of names is the content."""
    names = sorted(key.rsplit("/", 1)[-1] for key in part_keys)
    return hashlib.sha256("\n".join(names).encode()).hexdigest()[:16]


def content_digest(frame: pd.DataFrame) -> str:
    """A digest of a table's rows (vectorized: one hash per row, then one over them)."""
    row_hashes = pd.util.hash_pandas_object(frame.reset_index(drop=True), index=False).to_numpy()
    return hashlib.sha256(row_hashes.tobytes()).hexdigest()[:20]


def deadletter_key(digest: str) -> str:
    return f"deadletter/{digest}.parquet"


def read_prediction_partition(blob: BlobStore, hour: pd.Timestamp, sensor: str) -> pd.DataFrame | None:
    """The (hour, sensor) partition's predictions, whole (the parts its manifest names), or None
    when no run has completed it (``scoring.prediction_layout``)."""
    manifest = read_manifest(blob, hour, sensor)
    if manifest is None:
        return None
    parts = [blob.read_parquet(key) for key in manifest["parts"]]
    if not parts:
        return pd.DataFrame(columns=["ts", "device", "sensor", "value", "score", "is_anomaly", "model_version"])
    return pd.concat(parts, ignore_index=True)


def commit_prediction_partition(blob: BlobStore, hour: pd.Timestamp, sensor: str, parts: list[str], rows: int,
                                inputs: str | None = None, summary: dict | None = None) -> int:
    """Make ``parts`` the partition: write its manifest (one atomic blob, with the inputs version
    and summary it was scored from), then delete the parts the manifest it replaced named;
    returns how many were deleted. Other parts under the partition are left alone: they may be
    another run's, still going (a crashed run's parts are never read, having no manifest)."""
    previous = read_manifest(blob, hour, sensor)
    blob.write_bytes(prediction_manifest_key(hour, sensor), manifest_bytes(parts, rows, inputs, summary))
    stale = sorted(set(previous["parts"] if previous else []) - set(parts))
    legacy = f"predictions/{hour:{BLOB_HOUR_FORMAT}}/sensor={sensor}.parquet"  # the one-file layout before parts
    stale += [legacy] if blob.exists(legacy) else []
    for key in stale:
        if blob.exists(key):
            blob.delete(key)
    return len(stale)


def read_raw_hour(blob: BlobStore, hour: pd.Timestamp) -> pd.DataFrame:
    """Every reading stored for the hour, each (device, sensor, ts) once."""
    parts = raw_parts(blob, hour)
    if not parts:
        return empty_readings()
    return read_raw_parts([blob.read_bytes(key) for key in parts]).to_pandas()


def hours_between(start: pd.Timestamp, end: pd.Timestamp) -> list[pd.Timestamp]:
    """The hours ``[start, end)``."""
    return list(pd.date_range(start, end, freq="h", inclusive="left"))


def naive_utc(moment) -> pd.Timestamp:
    """A timestamp as naive UTC, the convention of every table in bscore."""
    stamp = pd.Timestamp(moment)
    return stamp.tz_convert("UTC").tz_localize(None) if stamp.tzinfo else stamp


def window_bounds(window) -> tuple[pd.Timestamp, pd.Timestamp]:
    """A Dagster time window as naive-UTC ``(start, end)``."""
    return naive_utc(window.start), naive_utc(window.end)
