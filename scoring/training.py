"""Fit a device's models, one per sensor, of the kind asked for, thresholds from the data.

Training is isolated per sensor and per device: a sensor whose windows cannot be fitted
(too few, non-finite, overflowing, or refused by its kind) is refused with its reason, and
every other sensor and device still trains. Refusals are returned as data, so the caller
reports them per device. Each model's threshold is calibrated on its own training windows by
its kind (``scoring.detectors``) to its share of the device's false-alarm budget
(``FitOptions.false_alarm_rate`` split evenly over the device's sensors).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from scoring.detectors import DEFAULT_KIND, KINDS, TRAINABLE, FitOptions, SvmParams, TrainingError, multivariate
from scoring.detectors.svm import build_pipeline, fit_sensor_model
from scoring.model_format import ModelBundle, versioned_bundle

__all__ = ["FitOptions", "SvmParams", "TrainingError", "build_pipeline", "fit_sensor_model", "fit_series",
           "train_device_bundle", "train_fleet"]


def _check_kind(kind: str) -> None:
    if kind not in TRAINABLE:
        raise ValueError(f"kind {kind!r} is not one bscore trains: one of {', '.join(TRAINABLE)}")


def fit_series(values: np.ndarray, kind: str = DEFAULT_KIND, options: FitOptions = FitOptions(),
               trained_from=None, trained_to=None):
    """One sensor's model of kind ``kind`` from its training windows (in time order).

    Raises
    ------
    TrainingError
        When the windows cannot be fitted; the message says why.
    ValueError
        When ``kind`` is not a trainable kind.
    """
    _check_kind(kind)
    values = np.asarray(values, dtype=float)
    if len(values) < options.min_samples:
        raise TrainingError(f"{len(values)} windows, fewer than min_samples={options.min_samples}")
    return KINDS[kind].fit(values, options, trained_from, trained_to)


def train_device_bundle(device: str, aggregates: pd.DataFrame, options: FitOptions = FitOptions(),
                        kind: str = DEFAULT_KIND, kinds: dict[str, str] | None = None, device_model: bool = True
                        ) -> tuple[ModelBundle, dict[str, str]]:
    """Fit a model for every sensor of ``device`` whose windows can be fitted.

    Parameters
    ----------
    device : str
        The device whose windows ``aggregates`` holds.
    aggregates : DataFrame
        ``ts, sensor, value`` windows of that device.
    options : FitOptions
        The false-alarm budget, the fewest windows a sensor needs, the SVM's hyperparameters.
        The budget is the device's: operators act on device windows, and a device window is
        anomalous when any of its sensors is, so each of its S sensors' models gets a budget
        of ``false_alarm_rate / S``.
    kind : str
        The detector kind of every sensor (``scoring.detectors.TRAINABLE``)...
    kinds : dict, optional
        ...unless named here for the sensor (``bscore train --select`` chooses them).
    device_model : bool, default True
        Also fit the multivariate device model (``scoring.detectors.multivariate``) over the
        sensors that trained, on the windows where all of them are present, at the device's
        whole budget; when it cannot be fitted the bundle has none and its metadata says why
        (``device_model_refused``).

    Returns
    -------
    (ModelBundle, dict)
        The bundle of the sensors that trained, versioned by training time and content
        (it may hold no model), and ``{sensor: reason}`` for each sensor refused. The reasons
        name the device and sensor.

    Examples
    --------
    >>> bundle, refused = train_device_bundle("pump-7", windows)  # doctest: +SKIP
    >>> refused
    {'3': 'device pump-7 sensor 3: 720 of 720 windows are NaN or infinite'}
    """
    models, refused = {}, {}
    by_sensor = aggregates.sort_values("ts", kind="stable").groupby("sensor", sort=True, observed=True)
    per_sensor = replace(options, false_alarm_rate=options.false_alarm_rate / max(by_sensor.ngroups, 1))
    for sensor, rows in by_sensor:
        sensor = str(sensor)
        try:
            models[sensor] = fit_series(rows["value"].to_numpy(), (kinds or {}).get(sensor, kind), per_sensor,
                                        rows["ts"].min(), rows["ts"].max())
        except TrainingError as exc:
            refused[sensor] = f"device {device} sensor {sensor}: {exc}"
    metadata = {"kind": kind, "false_alarm_rate": options.false_alarm_rate,
                "sensor_false_alarm_rate": per_sensor.false_alarm_rate, "params": options.svm.__dict__}
    fitted = None
    if device_model and models:
        try:
            fitted = fit_device_model(aggregates, sorted(models), options)
            if fitted.dropped:
                metadata["device_model_dropped"] = list(fitted.dropped)
        except TrainingError as exc:
            metadata["device_model_refused"] = f"device {device}: {exc}"
    return versioned_bundle(device, models, metadata, device_model=fitted), refused


def fit_device_model(aggregates: pd.DataFrame, sensors: list[str], options: FitOptions = FitOptions()
                     ) -> multivariate.DeviceModel:
    """The multivariate model of one device's ``ts, sensor, value`` windows over ``sensors``, on
    the windows where every one of them is present (``TrainingError`` when it cannot be fitted)."""
    rows = aggregates.assign(sensor=aggregates["sensor"].astype(str))
    ts, x = multivariate.device_matrix(rows[rows["sensor"].isin(sensors)], sensors)
    complete = np.isfinite(x).all(axis=1)
    return multivariate.fit_device(x[complete], sensors, options, ts[complete].min() if complete.any() else None,
                                   ts[complete].max() if complete.any() else None)


def train_fleet(windows: pd.DataFrame, devices, options: FitOptions = FitOptions(), kind: str = DEFAULT_KIND
                ) -> tuple[dict[str, ModelBundle], dict[str, dict[str, str]]]:
    """Train every device of ``devices`` on its rows of ``windows``, each on its own.

    Parameters
    ----------
    windows : DataFrame
        ``ts, device, sensor, value`` windows.
    devices : iterable of str
        The devices to train (a device without windows is refused with that reason).
    options : FitOptions
        Budget and hyperparameters.
    kind : str
        The detector kind.

    Returns
    -------
    (dict, dict)
        Device to its new bundle (only devices with at least one model), and device to
        ``{sensor: reason}`` for every refused sensor (``{"*": reason}`` when the device
        had no windows at all or failed as a whole).
    """
    _check_kind(kind)
    by_device = dict(tuple(windows.groupby("device", sort=False, observed=True))) if len(windows) else {}
    bundles, refused = {}, {}
    for device in devices:
        rows = by_device.get(device)
        if rows is None:
            refused[device] = {"*": f"device {device}: no windows in the training window"}
            continue
        try:
            bundle, sensors = train_device_bundle(device, rows, options, kind)
        except Exception as exc:  # one device's failure must not stop the fleet's training
            refused[device] = {"*": f"device {device}: training failed: {type(exc).__name__}: {exc}"}
            continue
        if sensors:
            refused[device] = sensors
        if bundle.models:
            bundles[device] = bundle
    return bundles, refused
