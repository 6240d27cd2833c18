"""Fleet simulators: readings of N devices x M sensors with planted anomalies.

:func:`simulate_readings` is the reference simulator's: values uniform in per-sensor ranges
(sensors beyond the fifth reuse them in turn), a planted anomaly a window of readings shifted
far outside its sensor's range. Easy to detect; tests and the fleet benchmark use it.

:func:`simulate_fleet` is realistic: each sensor behaves as real ones do (correlated, seasonal,
drifting, regime-switching, heavy-tailed, quantized, constant) and anomalies are sized in its
own noise, with labelled spans (docs/simulation.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from scoring import planted_anomalies, sensor_profiles
from scoring.anomaly_labels import LABEL_COLUMNS, empty_labels
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


@dataclass(frozen=True)
class SimulatedFleet:
    """A realistic fleet's readings, its labelled anomalies, and each sensor's behaviour."""

    readings: pd.DataFrame  # ts, device, sensor, value; ordered by time, then device and sensor
    labels: pd.DataFrame  # device, sensor, start, end, kind: the readings with start < ts <= end
    profiles: pd.DataFrame  # device, sensor, behaviour, level, sigma, quantum


def _check_fleet_args(devices, sensors, hours, train_hours, anomaly_rate, interval_seconds):
    if devices < 1 or sensors < 1:
        raise ValueError(f"devices={devices} and sensors={sensors} must both be at least 1")
    if not hours > 0 or not train_hours >= 0:
        raise ValueError(f"hours={hours} must be > 0 and train_hours={train_hours} >= 0")
    if not 0 <= anomaly_rate <= 1:
        raise ValueError(f"anomaly_rate={anomaly_rate} must be within [0, 1]")
    if not interval_seconds > 0:
        raise ValueError(f"interval_seconds={interval_seconds} must be > 0")


def simulate_fleet(
    devices: int = 3,
    sensors: int = 5,
    start: str | pd.Timestamp = "2026-01-01T00:00",
    hours: float = 1.0,
    anomaly_rate: float = 0.01,
    interval_seconds: float = 1.0,
    seed: int = 0,
    train_hours: float = 0.0,
    mix: dict[str, float] | None = None,
) -> SimulatedFleet:
    """Realistic readings in ``(start, start + train_hours + hours]``, one per ``interval_seconds``.

    One continuous series per sensor: regimes, daily cycle and drift run on across the first
    ``train_hours`` (clean) into the ``hours`` after them, where anomalies are planted on about
    ``anomaly_rate`` of each sensor's readings. Deterministic by ``seed``; the clean series does not
    depend on ``anomaly_rate``, so readings outside the labelled spans equal those of a run at
    rate 0. ``mix`` weighs the behaviours (default :data:`scoring.sensor_profiles.DEFAULT_MIX`).
    """
    _check_fleet_args(devices, sensors, hours, train_hours, anomaly_rate, interval_seconds)
    profile_rng, series_rng, anomaly_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3))
    start = pd.Timestamp(start)
    steps = int(round((train_hours + hours) * 3600 / interval_seconds))
    train_steps = int(round(train_hours * 3600 / interval_seconds))
    offsets = (np.arange(0, steps + 1) * interval_seconds * 1e9).astype("timedelta64[ns]")
    times = np.datetime64(start.to_datetime64(), "ns") + offsets  # times[0] = start, before any reading
    seconds = times[1:].astype("datetime64[ns]").astype(np.int64) / 1e9

    device_ids = np.array([str(d) for d in range(1, devices + 1)], dtype=object)
    sensor_ids = np.array([str(s) for s in range(1, sensors + 1)], dtype=object)
    series_device, series_sensor = np.repeat(device_ids, sensors), np.tile(sensor_ids, devices)
    ranges = [sensor_range(s) for s in np.tile(np.arange(1, sensors + 1), devices)]
    profiles = sensor_profiles.draw_profiles(ranges, profile_rng, mix)

    expected = sensor_profiles.expected_values(profiles, seconds, series_rng, interval_seconds)
    noise = sensor_profiles.noise(profiles, steps, interval_seconds, series_rng)
    planted = planted_anomalies.plan_anomalies(profiles, steps, train_steps, interval_seconds, anomaly_rate, anomaly_rng)
    planted_anomalies.apply_before_rounding(expected, noise, profiles, planted)
    expected += noise
    values = sensor_profiles.finish(expected, profiles)
    planted_anomalies.apply_after_rounding(values, planted)

    n_series = devices * sensors
    series_code = np.tile(np.arange(n_series), steps)
    readings = pd.DataFrame({
        "ts": np.repeat(times[1:], n_series),
        # Taking from a small string array: building 10^7 strings one by one takes seconds.
        "device": pd.array(series_device, dtype="str").take(series_code),
        "sensor": pd.array(series_sensor, dtype="str").take(series_code),
        "value": values.ravel(),
    })
    labels = pd.DataFrame(
        [(series_device[a.series], series_sensor[a.series], times[a.first], times[a.last + 1], a.kind) for a in planted],
        columns=LABEL_COLUMNS,
    ) if planted else empty_labels()
    labels = labels.sort_values(["start", "device", "sensor"], ignore_index=True)
    table = pd.DataFrame({"device": series_device, "sensor": series_sensor, "behaviour": profiles.behaviour,
                          "level": profiles.level, "sigma": profiles.sigma, "quantum": profiles.quantum})
    return SimulatedFleet(readings, labels, table)
