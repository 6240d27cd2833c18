"""Device verdicts: one anomaly verdict per device window, voted by the device's sensors.

Operators act on devices, while each model judges one sensor. A device window (device, ts) is
anomalous when at least ``min_sensors`` of the sensors scored in it are flagged (default 1: any
flagged sensor makes its device anomalous). The verdict keeps each sensor's contribution: how
many sensors were scored and flagged, and the flagged sensors' ids (sorted, comma-separated);
the per-sensor scores stay in the predictions, joinable on (device, ts).

A sensor with no prediction in a window (no model, no reading) does not vote: it counts neither
as scored nor as flagged, so with ``min_sensors=2`` a window where one sensor was scored is
never anomalous.

The vote moves columns, never a Python object per prediction: ids and times become integer
codes (each distinct value hashed once), and one sort of one integer key per prediction groups
the windows and orders their sensors. An hour of 2,000 devices x 5 sensors x 720 windows
(7.2 M predictions) takes about 0.6 s of CPU (``bench/verdicts_bench.py``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

VERDICT_COLUMNS = ["ts", "device", "is_anomaly", "sensors_scored", "sensors_flagged", "flagged_sensors"]
REQUIRED_COLUMNS = ["ts", "device", "sensor", "is_anomaly"]
SENSOR_SEPARATOR = ","

VERDICT_SCHEMA = pa.schema([
    ("ts", pa.timestamp("ns")),
    ("device", pa.string()),
    ("is_anomaly", pa.bool_()),
    ("sensors_scored", pa.int64()),
    ("sensors_flagged", pa.int64()),
    ("flagged_sensors", pa.string()),
])


def _as_arrow(predictions: pd.DataFrame | pa.Table) -> pa.Table:
    """The columns the vote needs, typed, from a frame or an Arrow table; a clear error when one
    is missing or holds nulls."""
    names = predictions.column_names if isinstance(predictions, pa.Table) else list(predictions.columns)
    missing = [name for name in REQUIRED_COLUMNS if name not in names]
    if missing:
        raise ValueError(f"predictions lack column(s) {', '.join(missing)}; "
                         f"a device verdict needs {', '.join(REQUIRED_COLUMNS)}")
    if isinstance(predictions, pd.DataFrame):
        frame = predictions[REQUIRED_COLUMNS]
        table = pa.table({
            "ts": pa.array(pd.to_datetime(frame["ts"]).to_numpy(dtype="datetime64[ns]")),
            "device": pa.array(frame["device"].astype(str), pa.string()) if len(frame) else pa.array([], pa.string()),
            "sensor": pa.array(frame["sensor"].astype(str), pa.string()) if len(frame) else pa.array([], pa.string()),
            "is_anomaly": pa.array(frame["is_anomaly"], pa.bool_(), from_pandas=True),
        })
    else:
        table = pa.table({
            "ts": pc.cast(predictions["ts"], pa.timestamp("ns")),
            "device": _strings(predictions["device"]),
            "sensor": _strings(predictions["sensor"]),
            "is_anomaly": pc.cast(predictions["is_anomaly"], pa.bool_()),
        })
    for name in REQUIRED_COLUMNS:
        nulls = table[name].null_count
        if nulls:
            raise ValueError(f"predictions column {name!r} has {nulls} missing value(s)")
    return table


def _strings(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Ids as strings; dictionary-encoded ids stay encoded (the vote reuses their codes)."""
    if pa.types.is_dictionary(column.type):
        return column.cast(pa.dictionary(column.type.index_type, pa.string()))
    return pc.cast(column, pa.string())


def device_verdicts(predictions: pd.DataFrame | pa.Table, min_sensors: int = 1) -> pa.Table:
    """Vote each device window's verdict from its sensors' predictions.

    Parameters
    ----------
    predictions : DataFrame or pyarrow Table
        Per-sensor predictions with at least ``ts, device, sensor, is_anomaly`` (other columns,
        such as ``score``, are ignored); each (device, sensor, ts) at most once.
    min_sensors : int, default 1
        Flagged sensors a device window needs to be anomalous.

    Returns
    -------
    pyarrow Table
        ``ts, device, is_anomaly, sensors_scored, sensors_flagged, flagged_sensors``, one row per
        (device, ts) with a prediction, sorted by device then ts; ``flagged_sensors`` is the
        flagged sensors' ids sorted and comma-separated (empty when none).

    Examples
    --------
    >>> rows = pd.DataFrame({"ts": pd.to_datetime(["2026-01-01 00:00:05"] * 3), "device": "d1",
    ...                      "sensor": ["s1", "s2", "s3"], "is_anomaly": [True, False, True]})
    >>> device_verdicts(rows, min_sensors=2).to_pylist()[0]["flagged_sensors"]
    's1,s3'
    """
    if isinstance(min_sensors, bool) or not isinstance(min_sensors, int) or min_sensors < 1:
        raise ValueError(f"min_sensors={min_sensors!r} must be a whole number of at least 1")
    table = _as_arrow(predictions)
    if not len(table):
        return VERDICT_SCHEMA.empty_table()
    devices, device_codes = _sorted_codes(table["device"])
    times, time_codes = _sorted_codes(table["ts"])
    sensors, sensor_codes = _sorted_codes(table["sensor"])
    # One integer per prediction that sorts as (device, ts, sensor) does: one sort gives the
    # device windows, their rows side by side, and each window's sensors in order.
    if len(devices) * len(times) * len(sensors) >= 2**62:
        raise ValueError(f"predictions span {len(devices)} devices x {len(times)} times x {len(sensors)} sensors: "
                         "too many to vote at once; vote an hour at a time")
    keys = (device_codes * np.int64(len(times)) + time_codes) * np.int64(len(sensors)) + sensor_codes
    order = np.argsort(keys, kind="stable")  # parts arrive as sorted runs, which a stable sort merges fast
    keys = keys[order]
    if len(keys) > 1 and not (keys[1:] != keys[:-1]).all():
        raise ValueError("predictions hold a sensor more than once in a device window; "
                         "each (device, sensor, ts) must appear once")
    row_windows = keys // len(sensors)
    starts = np.flatnonzero(np.concatenate([[True], row_windows[1:] != row_windows[:-1]]))
    windows = row_windows[starts]
    flags = table["is_anomaly"].to_numpy(zero_copy_only=False)[order]
    sensors_scored = np.diff(np.append(starts, len(keys)))
    sensors_flagged = np.add.reduceat(flags.astype(np.int64), starts)
    offsets = np.zeros(len(windows) + 1, dtype=np.int64)
    np.cumsum(sensors_flagged, out=offsets[1:])
    flagged_lists = pa.LargeListArray.from_arrays(pa.array(offsets), sensors.take(pa.array(keys[flags] % len(sensors))))
    return pa.table({
        "ts": times.take(pa.array(windows % len(times))),
        "device": devices.take(pa.array(windows // len(times))),
        "is_anomaly": pa.array(sensors_flagged >= min_sensors),
        "sensors_scored": pa.array(sensors_scored.astype(np.int64)),
        "sensors_flagged": pa.array(sensors_flagged),
        "flagged_sensors": pc.binary_join(flagged_lists, SENSOR_SEPARATOR),
    }, schema=VERDICT_SCHEMA)


def _sorted_codes(column: pa.ChunkedArray) -> tuple[pa.Array, np.ndarray]:
    """The column's distinct values, sorted, and each row's index into them (hashing once, then
    sorting only the distinct values); a dictionary-encoded column (Parquet read with
    ``read_dictionary``) is not hashed again."""
    if not pa.types.is_dictionary(column.type):
        column = pc.dictionary_encode(column)
    encoded = pa.table({"codes": column}).unify_dictionaries()["codes"].combine_chunks()
    indices = encoded.indices.to_numpy(zero_copy_only=False)
    order = pc.array_sort_indices(encoded.dictionary).to_numpy()
    if (order == np.arange(len(order))).all():  # values first seen in order, as sorted parts give them
        return encoded.dictionary, indices.astype(np.int64)
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return encoded.dictionary.take(pa.array(order)), rank[indices]


def parse_flagged_sensors(text: str) -> list[str]:
    """The sensor ids of a verdict's ``flagged_sensors``."""
    return text.split(SENSOR_SEPARATOR) if text else []


def verdict_summary(verdicts: pa.Table, top: int = 10) -> dict:
    """What an hour's verdicts say at a glance.

    Returns
    -------
    dict
        ``device_windows``, ``anomalous_device_windows``, ``anomaly_rate`` (their share),
        ``top_devices`` (the ``top`` devices with the most anomalous windows, and how many) and
        ``top_sensors`` (the ``top`` sensors flagged most often in anomalous windows, and how
        often), most first, ties by id.
    """
    anomalous = verdicts.filter(verdicts["is_anomaly"])
    windows, flagged = len(verdicts), len(anomalous)
    sensors = pc.list_flatten(pc.split_pattern(anomalous["flagged_sensors"], SENSOR_SEPARATOR))
    return {
        "device_windows": windows,
        "anomalous_device_windows": flagged,
        "anomaly_rate": flagged / windows if windows else 0.0,
        "top_devices": _most_common(anomalous["device"], top),
        "top_sensors": _most_common(sensors, top),
    }


def _most_common(values, top: int) -> dict[str, int]:
    counts = pc.value_counts(values).flatten() if len(values) else None
    if counts is None:
        return {}
    pairs = sorted(zip(counts[0].to_pylist(), counts[1].to_pylist()), key=lambda pair: (-pair[1], pair[0]))
    return {str(value): int(count) for value, count in pairs[:top] if value != ""}
