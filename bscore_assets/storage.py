"""Reading and writing each asset's data in blob storage (the keys are ``scoring.blob_layout``'s),
and the digests that name raw content."""

from __future__ import annotations

import hashlib
import time

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from resources.blob import BlobStore
from scoring.blob_layout import (
    acceptance_order,
    legacy_prediction_key,
    prediction_hour_prefix,
    prediction_manifest_key,
    raw_prefix,
    sensor_of_manifest_key,
)
from scoring.prediction_layout import manifest_bytes, read_manifest
from scoring.raw_parts import read_raw_parts
from scoring.readings import empty_readings


def acceptance_sequence(previous: int = 0) -> int:
    """An increasing number for the next part the drain accepts: the wall clock in nanoseconds,
    or one more than ``previous`` if the clock has not moved past it."""
    return max(time.time_ns(), previous + 1)


def part_span(ts_ns: np.ndarray, hour: pd.Timestamp) -> tuple[int, int]:
    """The whole seconds after ``hour`` around readings' times (nanoseconds): floor of the
    first, ceiling of the last."""
    offsets = ts_ns - pd.Timestamp(hour).value
    second = 1_000_000_000
    return int(offsets.min() // second), int(-(-offsets.max() // second))


def raw_parts(blob: BlobStore, hour: pd.Timestamp) -> list[str]:
    """The hour's raw parts in the order the drain accepted them."""
    return sorted((key for key in blob.list(raw_prefix(hour)) if key.endswith(".parquet")), key=acceptance_order)


def raw_version(part_keys: list[str]) -> str:
    """Names an hour's raw content: parts are named by content, so the set of names is the content."""
    names = sorted(key.rsplit("/", 1)[-1] for key in part_keys)
    return hashlib.sha256("\n".join(names).encode()).hexdigest()[:16]


def content_digest(frame: pd.DataFrame) -> str:
    """A digest of a table's rows (vectorized: one hash per row, then one over them)."""
    row_hashes = pd.util.hash_pandas_object(frame.reset_index(drop=True), index=False).to_numpy()
    return hashlib.sha256(row_hashes.tobytes()).hexdigest()[:20]


def arrow_digest(table: pa.Table) -> str:
    """A digest of a table's values in order, the same whatever its chunks and buffer offsets
    (one pass over the columns' buffers: no hash per row, no Python object per value)."""
    digest = hashlib.sha256()
    for name in table.column_names:
        column = table[name].combine_chunks()
        digest.update(f"{name}:{column.type}:{len(column)}:".encode())
        if column.null_count:
            digest.update(column.is_null().to_numpy(zero_copy_only=False).tobytes())
        if pa.types.is_string(column.type):
            offsets = np.frombuffer(column.buffers()[1], dtype=np.int32, count=len(column) + 1,
                                    offset=column.offset * 4)
            digest.update((offsets - offsets[0]).tobytes())
            if column.buffers()[2] is not None:  # None when every string is empty
                digest.update(memoryview(column.buffers()[2])[offsets[0] : offsets[-1]])
        else:
            digest.update(column.to_numpy(zero_copy_only=False).tobytes())
    return digest.hexdigest()[:20]


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
    legacy = legacy_prediction_key(hour, sensor)
    stale += [legacy] if blob.exists(legacy) else []
    for key in stale:
        if blob.exists(key):
            blob.delete(key)
    return len(stale)


def scored_sensors(blob: BlobStore, hour: pd.Timestamp) -> list[str]:
    """The sensors whose (hour, sensor) partition a run completed (it has a manifest)."""
    found = (sensor_of_manifest_key(hour, key) for key in blob.list(prediction_hour_prefix(hour)))
    return sorted(sensor for sensor in found if sensor is not None)


HOUR_PREDICTION_COLUMNS = ["ts", "device", "sensor", "is_anomaly"]
MULTIVARIATE_COLUMNS = HOUR_PREDICTION_COLUMNS + ["value", "model_version"]  # what a device model needs besides
_EMPTY_COLUMNS = {"ts": pa.timestamp("ns"), "device": pa.string(), "sensor": pa.string(), "is_anomaly": pa.bool_(),
                  "value": pa.float64(), "model_version": pa.string()}


def read_hour_predictions(blob: BlobStore, hour: pd.Timestamp, sensors: list[str],
                          columns: list[str] = HOUR_PREDICTION_COLUMNS) -> pa.Table:
    """The hour's predictions of ``sensors`` (those with a manifest), ``ts, device, sensor,
    is_anomaly`` only (or ``columns``), read from the parts the manifests name with ids
    dictionary-encoded (an hour of a large fleet stays a few columns of integers)."""
    tables = []
    encoded = [name for name in ("device", "sensor", "model_version") if name in columns]
    for sensor in sensors:
        manifest = read_manifest(blob, hour, sensor)
        for key in manifest["parts"] if manifest else []:
            tables.append(pq.read_table(pa.BufferReader(blob.read_bytes(key)), columns=columns,
                                        read_dictionary=encoded))
    if not tables:
        return pa.table({name: pa.array([], _EMPTY_COLUMNS[name]) for name in columns})
    return pa.concat_tables(tables)


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
