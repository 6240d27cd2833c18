"""A fleet simulator: readings of N devices x M sensors with planted anomalies.

Values are uniform in the reference simulator's per-sensor ranges (sensors beyond the
fifth reuse them in turn). A planted anomaly is a window of readings shifted far outside
its sensor's range, so the ground truth is known per reading and per window.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from scoring.windows import window_ends

REFERENCE_RANGES = [(10.0, 15.0), (30.0, 40.0), (60.0, 65.0), (80.0, 85.0), (100.0, 110.0)]


def sensor_range(sensor_number: int) -> tuple[float, float]:
    """The value range of sensor ``sensor_number`` (1-based)."""
    return REFERENCE_RANGES[(sensor_number - 1) % len(REFERENCE_RANGES)]


def simulate_readings(
    devices: int = 3,
    sensors: int = 5,
    start: str | pd.Timestamp = "2026-01-01T00:00",
    hours: float = 1.0,
    anomaly_rate: float = 0.01,
    interval_seconds: float = 1.0,
    window_seconds: int = 5,
    seed: int = 0,
) -> pd.DataFrame:
    """Readings for every device and sensor, one per ``interval_seconds``, in ``(start, start + hours]``.

    An anomaly is planted per (device, sensor, window) with probability ``anomaly_rate``:
    every reading in that window is moved 3 to 6 range-widths above or below the range.

    Returns
    -------
    DataFrame
        ``ts, device, sensor, value, planted`` (bool), ordered by time.
    """
    if not 0 <= anomaly_rate <= 1:
        raise ValueError(f"anomaly_rate={anomaly_rate} must be within [0, 1]")
    rng = np.random.default_rng(seed)
    start = pd.Timestamp(start)
    steps = int(round(hours * 3600 / interval_seconds))
    offsets = (np.arange(1, steps + 1) * interval_seconds * 1e9).astype("timedelta64[ns]")
    times = np.datetime64(start.to_datetime64(), "ns") + offsets
    device_ids = np.array([str(d) for d in range(1, devices + 1)], dtype=object)
    sensor_numbers = np.arange(1, sensors + 1)
    lo = np.array([sensor_range(s)[0] for s in sensor_numbers])
    hi = np.array([sensor_range(s)[1] for s in sensor_numbers])
    n_series = devices * sensors
    ts = np.repeat(times, n_series)
    series_device = np.repeat(device_ids, sensors)
    series_sensor = np.tile(sensor_numbers, devices)
    device = np.tile(series_device, steps)
    sensor_num = np.tile(series_sensor, steps)
    width = (hi - lo)[sensor_num - 1]
    value = lo[sensor_num - 1] + rng.random(len(ts)) * width
    windows = window_ends(pd.Series(ts), window_seconds).to_numpy()
    window_ids, window_code = np.unique(windows, return_inverse=True)
    series_code = np.tile(np.arange(n_series), steps)
    planted_windows = rng.random((len(window_ids), n_series)) < anomaly_rate
    direction = np.where(rng.random((len(window_ids), n_series)) < 0.5, -1.0, 1.0)
    magnitude = rng.uniform(3.0, 6.0, (len(window_ids), n_series))
    planted = planted_windows[window_code, series_code]
    shift = direction[window_code, series_code] * magnitude[window_code, series_code] * width
    value = np.where(planted, value + shift, value)
    return pd.DataFrame(
        {
            "ts": ts,
            "device": device,
            "sensor": sensor_num.astype(str).astype(object),
            "value": np.round(value, 4),
            "planted": planted,
        }
    )
