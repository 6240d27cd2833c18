"""Fit one StandardScaler + OneClassSVM per sensor of a device, the reference's pipeline.

Training is isolated per sensor and per device: a sensor whose windows cannot be fitted
(too few, non-finite, overflowing once scaled, or refused by scikit-learn) is refused with
its reason, and every other sensor and device still trains. Refusals are returned as data,
so the caller reports them per device.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import sklearn
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import OneClassSVM

from scoring.model_format import ModelBundle, ModelFormatError, SensorModel, model_metadata, versioned_bundle


class TrainingError(ValueError):
    """A sensor's windows cannot be fitted; the message says why."""


@dataclass(frozen=True)
class SvmParams:
    """Hyperparameters of the one-class SVM; the defaults are the reference's."""

    nu: float = 0.0001
    kernel: str = "rbf"
    gamma: float | str = 0.01
    coef0: float = 0.0
    degree: int = 3
    min_samples: int = 10


def build_pipeline(params: SvmParams = SvmParams()) -> Pipeline:
    """The unfitted scaler + one-class SVM pipeline."""
    return Pipeline(
        [
            ("scaler", StandardScaler()),
            (
                "classifier",
                OneClassSVM(
                    nu=params.nu,
                    kernel=params.kernel,
                    gamma=params.gamma,
                    coef0=params.coef0,
                    degree=params.degree,
                ),
            ),
        ]
    )


def fit_sensor_model(values: np.ndarray, params: SvmParams = SvmParams(), trained_from=None,
                     trained_to=None) -> tuple[SensorModel, Pipeline]:
    """Fit the pipeline on one sensor's window values; return its safe form and the pipeline.

    Raises
    ------
    TrainingError
        When the values cannot be fitted: non-finite values, values whose scaling
        overflows (a reading of 1e300 has an infinite variance), a fit scikit-learn refuses,
        or fitted parameters the scorer could not use.
    """
    x = np.asarray(values, dtype=float).reshape(-1, 1)
    if not np.isfinite(x).all():
        raise TrainingError(f"{int((~np.isfinite(x)).sum())} of {len(x)} windows are NaN or infinite")
    try:
        with np.errstate(over="raise", invalid="raise", divide="raise", under="ignore"), warnings.catch_warnings():
            # Overflow in the scaler's variance is an error here, not a warning and a NaN later.
            warnings.simplefilter("error", RuntimeWarning)
            pipeline = build_pipeline(params).fit(x)
    except (ValueError, FloatingPointError, OverflowError, RuntimeWarning) as exc:
        raise TrainingError(f"cannot fit {len(x)} windows (min {x.min():.6g}, max {x.max():.6g}): "
                            f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}") from None
    metadata = model_metadata(sklearn.__version__, len(x), trained_from, trained_to, nu=params.nu)
    try:
        return SensorModel.from_pipeline(pipeline, metadata), pipeline
    except ModelFormatError as exc:
        raise TrainingError(f"the fitted model is not usable: {exc}") from None


def train_device_bundle(
    device: str, aggregates: pd.DataFrame, params: SvmParams = SvmParams()
) -> tuple[ModelBundle, dict[str, str]]:
    """Fit a model for every sensor of ``device`` whose windows can be fitted.

    Parameters
    ----------
    device : str
        The device whose windows ``aggregates`` holds.
    aggregates : DataFrame
        ``ts, sensor, value`` windows of that device.
    params : SvmParams
        Hyperparameters, and the fewest windows a sensor needs (``min_samples``).

    Returns
    -------
    (ModelBundle, dict)
        The bundle of the sensors that trained, versioned by training time and content
        (it may hold no model), and ``{sensor: reason}`` for each sensor refused: too few
        windows, or windows that cannot be fitted. The reasons name the device and sensor.

    Examples
    --------
    >>> bundle, refused = train_device_bundle("pump-7", windows)  # doctest: +SKIP
    >>> refused
    {'3': 'device pump-7 sensor 3: cannot fit 720 windows (min 10.1, max 1e+300): FloatingPointError: ...'}
    """
    models, refused = {}, {}
    for sensor, rows in aggregates.groupby("sensor", sort=True):
        sensor = str(sensor)
        if len(rows) < params.min_samples:
            refused[sensor] = (f"device {device} sensor {sensor}: {len(rows)} windows, "
                               f"fewer than min_samples={params.min_samples}")
            continue
        try:
            models[sensor], _ = fit_sensor_model(rows["value"].to_numpy(), params, rows["ts"].min(), rows["ts"].max())
        except TrainingError as exc:
            refused[sensor] = f"device {device} sensor {sensor}: {exc}"
    return versioned_bundle(device, models, {"params": params.__dict__}), refused


def train_fleet(windows: pd.DataFrame, devices, params: SvmParams = SvmParams()
                ) -> tuple[dict[str, ModelBundle], dict[str, dict[str, str]]]:
    """Train every device of ``devices`` on its rows of ``windows``, each on its own.

    Parameters
    ----------
    windows : DataFrame
        ``ts, device, sensor, value`` windows.
    devices : iterable of str
        The devices to train (a device without windows is refused with that reason).
    params : SvmParams
        Hyperparameters.

    Returns
    -------
    (dict, dict)
        Device to its new bundle (only devices with at least one model), and device to
        ``{sensor: reason}`` for every refused sensor (``{"*": reason}`` when the device
        had no windows at all or failed as a whole).
    """
    by_device = dict(tuple(windows.groupby("device", sort=False, observed=True))) if len(windows) else {}
    bundles, refused = {}, {}
    for device in devices:
        rows = by_device.get(device)
        if rows is None:
            refused[device] = {"*": f"device {device}: no windows in the training window"}
            continue
        try:
            bundle, sensors = train_device_bundle(device, rows, params)
        except Exception as exc:  # one device's failure must not stop the fleet's training
            refused[device] = {"*": f"device {device}: training failed: {type(exc).__name__}: {exc}"}
            continue
        if sensors:
            refused[device] = sensors
        if bundle.models:
            bundles[device] = bundle
    return bundles, refused
