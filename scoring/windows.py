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

AGGREGATE_COLUMNS = ["ts", "device", "sensor", "value", "readings"]


def window_ends(ts: pd.Series, window_seconds: int) -> pd.Series:
    """The end of the tumbling window each timestamp falls in (a boundary ends its window)."""
    ns = pd.to_datetime(ts).to_numpy(dtype="datetime64[ns]").astype(np.int64)
    width = np.int64(window_seconds) * 1_000_000_000
    return pd.Series(-(-ns // width) * width, index=ts.index).astype("datetime64[ns]")


def hour_of_window(ts: pd.Series) -> pd.Series:
    """The hour partition a reading or window end belongs to: ``H`` for ``(H, H + 1h]``."""
    return pd.to_datetime(ts).dt.ceil("h") - pd.Timedelta(hours=1)


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
    if not isinstance(window_seconds, (int, np.integer)) or window_seconds <= 0 or 3600 % window_seconds:
        raise ValueError(f"window_seconds={window_seconds!r} must be a whole number of seconds dividing 3600")
    if readings.empty:
        return pd.DataFrame(
            {
                "ts": pd.Series([], dtype="datetime64[ns]"),
                "device": pd.Series([], dtype=object),
                "sensor": pd.Series([], dtype=object),
                "value": pd.Series([], dtype="float64"),
                "readings": pd.Series([], dtype="int64"),
            }
        )
    keyed = readings.assign(ts=window_ends(readings["ts"], window_seconds))
    grouped = keyed.groupby(["device", "sensor", "ts"], sort=True, observed=True)["value"]
    out = grouped.agg(["mean", "size"]).reset_index()
    out = out.rename(columns={"mean": "value", "size": "readings"})
    out["readings"] = out["readings"].astype("int64")
    return out[AGGREGATE_COLUMNS]

