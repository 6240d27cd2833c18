"""Fit one StandardScaler + OneClassSVM per sensor of a device, the reference's pipeline."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import sklearn
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import OneClassSVM

from scoring.model_format import ModelBundle, SensorModel, model_metadata, versioned_bundle


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
    """Fit the pipeline on one sensor's window values; return its safe form and the pipeline."""
    x = np.asarray(values, dtype=float).reshape(-1, 1)
    pipeline = build_pipeline(params).fit(x)
    metadata = model_metadata(sklearn.__version__, len(x), trained_from, trained_to, nu=params.nu)
    return SensorModel.from_pipeline(pipeline, metadata), pipeline


def train_device_bundle(
    device: str, aggregates: pd.DataFrame, params: SvmParams = SvmParams()
) -> tuple[ModelBundle, list[str]]:
    """Fit a model for every sensor of ``device`` with at least ``params.min_samples`` windows.

    Parameters
    ----------
    device : str
        The device whose windows ``aggregates`` holds.
    aggregates : DataFrame
        ``ts, sensor, value`` windows of that device.

    Returns
    -------
    (ModelBundle, list of str)
        The bundle, versioned by training time and content, and the sensors skipped for
        having too few windows.
    """
    models, skipped = {}, []
    for sensor, rows in aggregates.groupby("sensor", sort=True):
        if len(rows) < params.min_samples:
            skipped.append(str(sensor))
            continue
        models[str(sensor)], _ = fit_sensor_model(rows["value"].to_numpy(), params,
                                                  rows["ts"].min(), rows["ts"].max())
    return versioned_bundle(device, models, {"params": params.__dict__}), skipped
