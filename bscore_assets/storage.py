"""Where each asset's data lives in blob storage: one function per path, used by every reader
and writer of it."""

from __future__ import annotations

import pandas as pd

from resources.blob import BlobStore
from scoring.readings import drop_duplicate_readings, empty_readings

BLOB_HOUR_FORMAT = "%Y-%m-%dT%H"


def raw_prefix(hour: pd.Timestamp) -> str:
    return f"raw/{hour:{BLOB_HOUR_FORMAT}}/"


def raw_part_key(hour: pd.Timestamp, label: str) -> str:
    return f"{raw_prefix(hour)}part-{label}.parquet"


def aggregated_marker_key(hour: pd.Timestamp) -> str:
    """Written when the hour's aggregates are stored; readings arriving after it are late."""
    return f"{raw_prefix(hour)}_aggregated.json"


def deadletter_key(label: str) -> str:
    return f"deadletter/{label}.parquet"


def prediction_key(hour: pd.Timestamp, sensor: str) -> str:
    return f"predictions/{hour:{BLOB_HOUR_FORMAT}}/sensor={sensor}.parquet"


def read_raw_hour(blob: BlobStore, hour: pd.Timestamp) -> pd.DataFrame:
    """Every reading stored for the hour, each (device, sensor, ts) once."""
    parts = [blob.read_parquet(key) for key in blob.list(raw_prefix(hour)) if key.endswith(".parquet")]
    if not parts:
        return empty_readings()
    return drop_duplicate_readings(pd.concat(parts, ignore_index=True))


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
