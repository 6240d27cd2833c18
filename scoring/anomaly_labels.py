"""Labelled anomaly spans (``device, sensor, start, end, kind``) and the readings they cover.

A span covers the readings with ``start < ts <= end``, as a tumbling window covers its
readings: ``start`` is the time of the last reading before the anomaly, ``end`` the time of its
last changed reading.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

LABEL_COLUMNS = ["device", "sensor", "start", "end", "kind"]
ISO_FORMAT = "%Y-%m-%dT%H:%M:%S.%f"


def empty_labels() -> pd.DataFrame:
    """A labels table with no span."""
    return pd.DataFrame({
        "device": pd.Series([], dtype=object), "sensor": pd.Series([], dtype=object),
        "start": pd.Series([], dtype="datetime64[ns]"), "end": pd.Series([], dtype="datetime64[ns]"),
        "kind": pd.Series([], dtype=object),
    })


def label_mask(readings: pd.DataFrame, labels: pd.DataFrame) -> np.ndarray:
    """Per reading: does it lie in a labelled span of its device and sensor."""
    mask = np.zeros(len(readings), dtype=bool)
    if labels.empty or readings.empty:
        return mask
    ts = readings["ts"].to_numpy(dtype="datetime64[ns]")
    series = readings.groupby(["device", "sensor"], sort=False).indices
    for key, spans in labels.groupby(["device", "sensor"], sort=False):
        rows = series.get(key)
        if rows is None:
            continue
        order = rows[np.argsort(ts[rows], kind="stable")]
        times = ts[order]
        lo = np.searchsorted(times, spans["start"].to_numpy(dtype="datetime64[ns]"), side="right")
        hi = np.searchsorted(times, spans["end"].to_numpy(dtype="datetime64[ns]"), side="right")
        for a, b in zip(lo, hi):
            mask[order[a:b]] = True
    return mask


def labels_from_planted(readings: pd.DataFrame, interval_seconds: float, window_seconds: int) -> pd.DataFrame:
    """Spans for the uniform simulator's planted windows (its ``planted`` column), kind ``offset``."""
    from scoring.windows import window_ends

    planted = readings.loc[readings["planted"], ["ts", "device", "sensor"]]
    if planted.empty:
        return empty_labels()
    keyed = planted.assign(window=window_ends(planted["ts"], window_seconds))
    spans = keyed.groupby(["device", "sensor", "window"], sort=False)["ts"].agg(["min", "max"]).reset_index()
    return pd.DataFrame({
        "device": spans["device"], "sensor": spans["sensor"],
        "start": spans["min"] - pd.Timedelta(seconds=interval_seconds), "end": spans["max"], "kind": "offset",
    }).sort_values(["start", "device", "sensor"], ignore_index=True)


def write_labels_csv(labels: pd.DataFrame, path) -> None:
    """The labels as CSV with ISO-8601 times."""
    labels[LABEL_COLUMNS].to_csv(path, index=False, date_format=ISO_FORMAT)
