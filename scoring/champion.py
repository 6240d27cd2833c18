"""Retraining that cannot learn the anomalies it should find, and cannot ratchet: the gate.

A new model (the challenger) is trained on the training window less every hour in which the
current model (the champion) flags more than the WARN rate: an hour that anomalous is left
out whole. Within the hours kept every window stays: dropping the windows the champion
flags would cut the tails of what the challenger learns, so that each generation's
data-calibrated thresholds sat tighter than the last and flagged more of the same clean data
(a ratchet). Anomalies left in kept hours are bounded by the WARN rate, and each kind's
thresholds are robust to that much (``scoring.detectors``).

Then the challenger is judged per sensor on a hold-out hour it was not trained on, against
a fixed limit (the WARN rate), never against the champion's own rate: a sensor whose model
flags more than the limit is refused, by name. Nothing the gate decides depends on an
earlier generation's margin, so retraining on the same hours gives the same models.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from scoring.engine import score_shard
from scoring.model_format import ModelBundle
from scoring.windows import hour_of_window

KEYS = ["device", "sensor", "ts"]


def flag_windows(windows: pd.DataFrame, bundle: ModelBundle | dict[str, ModelBundle]) -> pd.Series:
    """Per window (aligned with ``windows``): True where ``bundle`` (or its device's of a dict of
    bundles, many devices scored in one pass) flags it, False where it accepts it, NA where it has
    no model for the window's sensor."""
    if windows.empty:
        return pd.Series(pd.array([], dtype="boolean"), index=windows.index)
    bundles = bundle if isinstance(bundle, dict) else {bundle.device: bundle}
    ordered = windows.sort_values(KEYS)
    columns = ["ts", "device", "sensor", "value"] + [c for c in ("low", "high") if c in windows.columns]
    predictions = score_shard(ordered[columns].reset_index(drop=True), bundles).predictions
    flagged = predictions[KEYS + ["is_anomaly"]].astype({"device": str, "sensor": str})
    merged = windows[KEYS].astype({"device": str, "sensor": str}).merge(flagged, on=KEYS, how="left")
    return pd.Series(merged["is_anomaly"].astype("boolean").to_numpy(), index=windows.index)


@dataclass(frozen=True)
class TrainingSelection:
    """The windows to train on and the hours left out of them."""

    windows: pd.DataFrame
    excluded_windows: int
    excluded_hours: list[pd.Timestamp]


def windows_champion_accepts(windows: pd.DataFrame, champion: ModelBundle | None, warn_rate: float) -> TrainingSelection:
    """Leave out every window of an hour where ``champion`` flags more than ``warn_rate`` of
    them; with no champion, every window is kept."""
    if champion is None or windows.empty:
        return TrainingSelection(windows, 0, [])
    flagged = flag_windows(windows, champion)
    hours = hour_of_window(windows["ts"])
    hour_rate = flagged.astype("Float64").groupby(hours).mean()
    bad_hours = sorted(hour_rate[hour_rate > warn_rate].index)
    keep = ~hours.isin(bad_hours)
    return TrainingSelection(windows[keep], int((~keep).sum()), bad_hours)


def bad_hours_of_devices(windows: pd.DataFrame, champions: dict[str, ModelBundle], warn_rate: float
                         ) -> dict[str, list[pd.Timestamp]]:
    """Per device of ``champions``: the hours of ``windows`` (many devices') in which its champion
    flags more than ``warn_rate`` of the windows, found in one scoring pass."""
    windows = windows[windows["device"].astype(str).isin(list(champions))]
    if windows.empty:
        return {}
    flagged = flag_windows(windows, champions).astype("Float64")
    rates = flagged.groupby([windows["device"].astype(str), hour_of_window(windows["ts"])]).mean()
    bad: dict[str, list[pd.Timestamp]] = {}
    for device, hour in rates[rates > warn_rate].index:
        bad.setdefault(device, []).append(hour)
    return {device: sorted(hours) for device, hours in bad.items()}


def select_training_windows(windows: pd.DataFrame, bad_hours: list[pd.Timestamp]) -> TrainingSelection:
    """``windows`` less those of ``bad_hours``."""
    if not bad_hours:
        return TrainingSelection(windows, 0, [])
    keep = ~hour_of_window(windows["ts"]).isin(bad_hours)
    return TrainingSelection(windows[keep], int((~keep).sum()), bad_hours)


def fleet_sensor_rates(bundles: dict[str, ModelBundle], windows: pd.DataFrame) -> dict[str, dict[str, float]]:
    """``sensor_rates`` of many devices' bundles on their rows of ``windows``, in one scoring pass."""
    if windows.empty or not bundles:
        return {}
    flagged = flag_windows(windows, bundles).astype("Float64")
    devices, sensors = windows["device"].astype(str), windows["sensor"].astype(str)
    rates = flagged.groupby([devices.to_numpy(), sensors.to_numpy()]).mean().dropna()
    found: dict[str, dict[str, float]] = {}
    for (device, sensor), rate in rates.items():
        found.setdefault(str(device), {})[str(sensor)] = float(rate)
    return found


def sensor_rates(bundle: ModelBundle, windows: pd.DataFrame) -> dict[str, float]:
    """Share of each sensor's windows that ``bundle`` flags (sensors it has a model and windows for)."""
    covered = windows[windows["sensor"].astype(str).isin(list(bundle.models))]
    if covered.empty:
        return {}
    flagged = flag_windows(covered, bundle).astype(bool)
    return {str(s): float(v) for s, v in flagged.groupby(covered["sensor"].astype(str).to_numpy()).mean().items()}


def anomaly_rate(bundle: ModelBundle, windows: pd.DataFrame) -> float | None:
    """Share of the windows of ``bundle``'s sensors that it flags (None when it covers none)."""
    covered = windows[windows["sensor"].astype(str).isin(list(bundle.models))]
    if covered.empty:
        return None
    return float(flag_windows(covered, bundle).astype(bool).mean())


@dataclass(frozen=True)
class GateDecision:
    """The challenger's flag rate on the hold-out per sensor, and the sensors over ``limit``."""

    limit: float
    rates: dict[str, float] = field(default_factory=dict)
    over: dict[str, float] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return not self.over

    def describe(self) -> str:
        if not self.rates:
            return "no hold-out windows to judge it on"
        if self.passed:
            return f"every sensor flags at most {self.limit:.2%} of the hold-out hour (highest {max(self.rates.values()):.2%})"
        return "; ".join(f"sensor {s} flags {r:.2%} of the hold-out hour, over {self.limit:.2%}"
                         for s, r in sorted(self.over.items()))


def gate(challenger: ModelBundle, holdout: pd.DataFrame, limit: float) -> GateDecision:
    """Judge each of ``challenger``'s sensors on the ``holdout`` windows: over ``limit`` (a fixed
    rate, the WARN rate) is refused."""
    rates = sensor_rates(challenger, holdout)
    return GateDecision(limit, rates, {s: r for s, r in rates.items() if r > limit})
