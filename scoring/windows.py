"""Tumbling-window aggregation of readings, as Azure Stream Analytics' job does it.

A window covers ``(end - length, end]``: like ASA's tumbling windows it includes its end
and excludes its start, and its timestamp is its end (``System.Timestamp``). The value is
the average of the window's readings per device and sensor. Windows are aligned to the
epoch, so an hour splits into whole windows when the length divides 3600 s. Hour ``H``
holds the windows ending in ``(H, H + 1h]`` and so the readings in ``(H, H + 1h]``: a reading
at exactly 01:00:00 closes hour 00's last window. Already-aggregated data (such as the
reference's, stamped with window ends) re-aggregates onto itself.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from scoring.series_keys import series_codes
from scoring.time_units import HOUR

AGGREGATE_COLUMNS = ["ts", "device", "sensor", "value", "readings"]


def window_ends_ns(ns: np.ndarray, window_seconds: int) -> np.ndarray:
    """The end of the ``(end - length, end]`` window each time (nanoseconds since the epoch) falls
    in, in nanoseconds: a boundary ends its window."""
    width = np.int64(window_seconds) * 1_000_000_000
    return -(-ns // width) * width


def window_ends(ts: pd.Series, window_seconds: int) -> pd.Series:
    """The end of the tumbling window each timestamp falls in (a boundary ends its window)."""
    ns = pd.to_datetime(ts).to_numpy(dtype="datetime64[ns]").astype(np.int64)
    return pd.Series(window_ends_ns(ns, window_seconds), index=ts.index).astype("datetime64[ns]")


def hour_of_window(ts: pd.Series) -> pd.Series:
    """The hour partition a reading or window end belongs to: ``H`` for ``(H, H + 1h]``."""
    return pd.to_datetime(ts).dt.ceil("h") - HOUR


def tumbling_window_means(readings: pd.DataFrame, window_seconds: int = 5) -> pd.DataFrame:
    """Average readings per device, sensor and tumbling window.

    Parameters
    ----------
    readings : DataFrame
        Canonical readings (``ts, device, sensor, value``).
    window_seconds : int
        Window length; must divide 3600 so that hours hold whole windows.

    Returns
    -------
    DataFrame
        ``ts`` (window end), ``device``, ``sensor``, ``value`` (mean), ``readings`` (count),
        sorted by device, sensor and ts.
    """
    return window_means_table(readings, window_seconds).to_pandas()


def window_means_table(readings: pd.DataFrame | pa.Table, window_seconds: int = 5) -> pa.Table:
    """:func:`tumbling_window_means` in columns, no Python per row.

    Device and sensor become integer ranks, so that each (series, window) is one integer;
    sums and counts are then one ``bincount`` each, already in (device, sensor, ts) order.

    Parameters
    ----------
    readings : DataFrame or pyarrow Table
        Canonical readings (``ts, device, sensor, value``); ``device`` and ``sensor`` may be
        dictionary-encoded.

    Returns
    -------
    pyarrow.Table
        ``ts`` (``timestamp[ns]``, window end), ``device``, ``sensor`` (strings), ``value``
        (mean), ``readings`` (count), sorted by device, sensor and ts.
    """
    if not isinstance(window_seconds, (int, np.integer)) or window_seconds <= 0 or 3600 % window_seconds:
        raise ValueError(f"window_seconds={window_seconds!r} must be a whole number of seconds dividing 3600")
    table = readings if isinstance(readings, pa.Table) else pa.Table.from_pandas(
        readings[["ts", "device", "sensor", "value"]], preserve_index=False)
    if not len(table):
        return pa.table({"ts": pa.array([], pa.timestamp("ns")), "device": pa.array([], pa.string()),
                         "sensor": pa.array([], pa.string()), "value": pa.array([], pa.float64()),
                         "readings": pa.array([], pa.int64())})
    ns = pc.cast(pc.cast(table["ts"], pa.timestamp("ns")), pa.int64()).to_numpy()
    width = np.int64(window_seconds) * 1_000_000_000
    ends = window_ends_ns(ns, window_seconds)
    value = pc.cast(table["value"], pa.float64()).to_numpy()
    series, devices, sensors = series_codes(table["device"], table["sensor"])
    first = ends.min()
    slots = (ends.max() - first) // width + 1
    bins = (series.max() + 1) * slots
    if bins <= max(4 * len(ns), 1 << 22):
        # One bin per (series, window), in (device, sensor, ts) order: counts and sums by bincount.
        key = series * slots + (ends - first) // width
        counts = np.bincount(key, minlength=bins)
        present = np.flatnonzero(counts)
        sums = np.bincount(key, weights=value, minlength=bins)[present]
        counts = counts[present]
        series_of, slot = present // slots, present % slots
    else:  # readings spread over a long time: hash the keys instead
        grouped = (pa.table({"series": series, "ts": ends, "value": value}).group_by(["series", "ts"])
                   .aggregate([("value", "sum"), ("value", "count")]).sort_by([("series", "ascending"),
                                                                              ("ts", "ascending")]))
        series_of = grouped["series"].to_numpy()
        slot = (grouped["ts"].to_numpy() - first) // width
        sums, counts = grouped["value_sum"].to_numpy(), grouped["value_count"].to_numpy()
    return pa.table({
        "ts": pa.array((first + slot * width).astype("datetime64[ns]")),
        "device": devices.take(pa.array(series_of // len(sensors))),
        "sensor": sensors.take(pa.array(series_of % len(sensors))),
        "value": pa.array(sums / counts),
        "readings": pa.array(counts.astype(np.int64)),
    })
