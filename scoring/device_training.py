"""Train one device behind the retraining gate: what a training task does per device.

The challenger learns the training window less the hours the current model flags over the WARN
rate, and each sensor's model is judged on the hold-out hour (the window's last hour) against
the WARN rate (``scoring.champion``); a sensor over it falls back to the robust kind, or is
refused by name (the device keeps its current model for it). A device whose training fails is
refused by name and the others go on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from scoring.champion import (GateDecision, bad_hours_of_devices, fleet_sensor_rates, gate,
                              select_training_windows)
from scoring.detectors import FitOptions, kind_of
from scoring.detectors.multivariate import device_matrix
from scoring.model_format import ModelBundle, versioned_bundle
from scoring.selection import choose_kinds
from scoring.training import fit_series, train_device_bundle, window_extremes_columns
from scoring.training_outcome import TrainingOutcome

TRAINING_ERRORS = (ValueError, ArithmeticError, np.linalg.LinAlgError)


@dataclass(frozen=True)
class GateLimits:
    """The hold-out limits: a sensor's model may flag at most ``anomaly_rate_warn`` of its hold-out
    windows, the device model at most ``device_anomaly_rate_warn`` of the device windows."""

    anomaly_rate_warn: float
    device_anomaly_rate_warn: float


def train_device(device: str, windows: pd.DataFrame, champion, holdout_start: pd.Timestamp,
                 options: FitOptions, kind: str, select: bool, limits: GateLimits) -> TrainingOutcome:
    """Train one device's challenger and judge it per sensor on the hold-out hour (``train_devices``
    of one device)."""
    champions = {device: champion} if champion is not None else {}
    return train_devices({device: windows}, champions, holdout_start, options, kind, select, limits)[device]


def train_devices(windows: dict[str, pd.DataFrame], champions: dict[str, ModelBundle], holdout_start: pd.Timestamp,
                  options: FitOptions, kind: str, select: bool, limits: GateLimits) -> dict[str, TrainingOutcome]:
    """Train each device's challenger and judge it per sensor on the hold-out hour.

    The challenger learns the hours before the hold-out hour (all of a one-hour window), less
    every hour the current model (of ``champions``) flags over the WARN rate. A sensor over the
    WARN rate on the hold-out falls back to the robust kind when it was another; if it is still
    over, it is refused: the device keeps its current model for that sensor, or has none. The
    champions' and the challengers' flags are each found in one scoring pass over all the
    devices (a pass per device cost three times the fitting).

    Parameters
    ----------
    windows : dict
        Device to its ``ts, sensor, value`` windows (optionally ``low``, ``high``).
    champions : dict
        Device to its current bundle, for the devices that have one.

    Returns
    -------
    dict
        Device to its outcome; a promoted one holds the new bundle.
    """
    warn = limits.anomaly_rate_warn
    split = {}
    for device, rows in windows.items():
        training = rows[rows["ts"] <= holdout_start]
        split[device] = (rows if training.empty else training, rows[rows["ts"] > holdout_start])
    present = [rows for device, (rows, _) in split.items() if device in champions]
    bad_hours = bad_hours_of_devices(pd.concat(present), champions, warn) if present else {}
    outcomes: dict[str, TrainingOutcome] = {}
    challengers: dict[str, ModelBundle] = {}
    selections = {}
    for device, (training, _) in split.items():
        selection = selections[device] = select_training_windows(training, bad_hours.get(device, []))
        outcome = outcomes[device] = TrainingOutcome(
            windows_trained=len(selection.windows), windows_excluded=selection.excluded_windows,
            hours_excluded=[f"{h:%Y-%m-%dT%H}" for h in selection.excluded_hours])
        try:
            choices = choose_kinds(selection.windows, options) if select else {}
            outcome.selected = {sensor: choice.describe() for sensor, choice in choices.items()}
            challengers[device], outcome.sensors_without_model = train_device_bundle(
                device, selection.windows, options, kind, {sensor: choice.kind for sensor, choice in choices.items()})
        except TRAINING_ERRORS as exc:
            outcome.status, outcome.reason = "refused", f"training failed: {type(exc).__name__}: {str(exc)[:300]}"
    holdouts = [split[device][1] for device in challengers]
    rates = fleet_sensor_rates(challengers, pd.concat(holdouts)) if holdouts else {}
    for device, bundle in challengers.items():
        decision = GateDecision(warn, rates.get(device, {}),
                                {s: r for s, r in rates.get(device, {}).items() if r > warn})
        _finish(outcomes[device], bundle, decision, selections[device].windows, split[device][1],
                champions.get(device), options, limits)
    return outcomes


def _finish(outcome: TrainingOutcome, bundle: ModelBundle, decision: GateDecision, training: pd.DataFrame,
            holdout: pd.DataFrame, champion, options: FitOptions, limits: GateLimits) -> None:
    """Fall back, refuse or keep each sensor by the gate's ``decision``; judge the device model."""
    warn, device = limits.anomaly_rate_warn, bundle.device
    models = dict(bundle.models)
    try:
        for sensor in list(decision.over):
            if kind_of(models[sensor]).name == "robust":
                continue
            rows = training[training["sensor"].astype(str) == sensor]
            models[sensor] = fit_series(rows["value"].to_numpy(), "robust", options, rows["ts"].min(), rows["ts"].max(),
                                        **window_extremes_columns(rows))
            outcome.fell_back[sensor] = f"{kind_of(bundle.models[sensor]).name} flagged {decision.over[sensor]:.2%}"
        if outcome.fell_back:
            decision = gate(ModelBundle(device, bundle.version, models), holdout, warn)
    except TRAINING_ERRORS as exc:
        outcome.status, outcome.reason = "refused", f"training failed: {type(exc).__name__}: {str(exc)[:300]}"
        return
    outcome.holdout_rates = decision.rates
    for sensor, rate in decision.over.items():
        outcome.sensors_refused[sensor] = f"flags {rate:.2%} of the hold-out hour, over the WARN rate {warn:.2%}"
        models.pop(sensor)
        if champion is not None and sensor in champion.models:
            models[sensor] = champion.models[sensor]
            outcome.sensors_kept[sensor] = champion.version
    outcome.constant_sensors = sorted(s for s, m in models.items() if getattr(m, "rule", None) == "constant")
    trained = set(models) - set(outcome.sensors_kept)
    if not trained:
        outcome.status = "no model"
        outcome.reason = "no sensor trained" + (f" ({decision.describe()})" if decision.over else "")
        return
    device_model = judge_device_model(bundle, holdout, limits.device_anomaly_rate_warn, outcome)
    outcome.bundle = versioned_bundle(device, models, {**bundle.metadata, "holdout_rates": decision.rates,
                                                       "sensors_kept": outcome.sensors_kept,
                                                       "device_model_holdout_rate": outcome.device_model_holdout_rate,
                                                       "device_model_refused": outcome.device_model_refused},
                                      device_model=device_model)
    outcome.status = "promoted"
    outcome.reason = outcome.story(len(trained), warn)


def judge_device_model(bundle: ModelBundle, holdout: pd.DataFrame, limit: float, outcome: TrainingOutcome):
    """The challenger's device model if it flags at most ``limit`` (the device WARN rate) of the
    hold-out device windows, else None; ``outcome`` records its rate, or why there is none."""
    model = bundle.device_model
    if model is None:
        outcome.device_model_refused = bundle.metadata.get("device_model_refused", "not fitted")
        return None
    outcome.device_model_dropped = list(model.dropped)
    _, x = device_matrix(holdout.assign(sensor=holdout["sensor"].astype(str)), model.sensors)
    x = x[~np.isnan(x).all(axis=1)]
    if not len(x):
        return model
    outcome.device_model_holdout_rate = rate = float(model.score(x)[1].mean())
    if rate > limit:
        outcome.device_model_refused = f"flags {rate:.2%} of the hold-out device windows, over the device WARN " \
                                       f"rate {limit:.2%}"
        return None
    return model
