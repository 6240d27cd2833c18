"""Retraining that cannot learn the anomalies it should find: a champion/challenger gate.

A new model (the challenger) is trained only on windows the current model (the champion)
accepts: windows it flags, and whole hours where it flags more than the WARN rate, are left
out. The challenger then becomes current only if, on a hold-out hour it was not trained on,
it flags no more than the WARN rate and not materially more than the champion does.
Decisions are per device.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from scoring.engine import score_shard
from scoring.model_format import ModelBundle
from scoring.windows import hour_of_window

KEYS = ["device", "sensor", "ts"]


def flag_windows(windows: pd.DataFrame, bundle: ModelBundle) -> pd.Series:
    """Per window (aligned with ``windows``): True where ``bundle`` flags it, False where it
    accepts it, NA where it has no model for the window's sensor."""
    if windows.empty:
        return pd.Series(pd.array([], dtype="boolean"), index=windows.index)
    ordered = windows.sort_values(KEYS)
    predictions = score_shard(ordered[["ts", "device", "sensor", "value"]].reset_index(drop=True),
                              {bundle.device: bundle}).predictions
    flagged = predictions[KEYS + ["is_anomaly"]].astype({"device": str, "sensor": str})
    merged = windows[KEYS].astype({"device": str, "sensor": str}).merge(flagged, on=KEYS, how="left")
    return pd.Series(merged["is_anomaly"].astype("boolean").to_numpy(), index=windows.index)


@dataclass(frozen=True)
class TrainingSelection:
    """The windows to train on and what was left out of them."""

    windows: pd.DataFrame
    excluded_windows: int
    excluded_hours: list[pd.Timestamp]


def windows_champion_accepts(windows: pd.DataFrame, champion: ModelBundle | None, warn_rate: float) -> TrainingSelection:
    """Leave out the windows ``champion`` flags, and every window of an hour where it flags more
    than ``warn_rate`` of them; with no champion, every window is kept."""
    if champion is None or windows.empty:
        return TrainingSelection(windows, 0, [])
    flagged = flag_windows(windows, champion)
    hours = hour_of_window(windows["ts"])
    hour_rate = flagged.astype("Float64").groupby(hours).mean()
    bad_hours = sorted(hour_rate[hour_rate > warn_rate].index)
    keep = ~flagged.fillna(False).astype(bool) & ~hours.isin(bad_hours)
    return TrainingSelection(windows[keep], int((~keep).sum()), bad_hours)


def anomaly_rate(bundle: ModelBundle, windows: pd.DataFrame) -> float | None:
    """Share of the windows of ``bundle``'s sensors that it flags (None when it covers none)."""
    covered = windows[windows["sensor"].astype(str).isin(list(bundle.models))]
    if covered.empty:
        return None
    return float(flag_windows(covered, bundle).astype(bool).mean())


@dataclass(frozen=True)
class GateDecision:
    promoted: bool
    reason: str
    challenger_rate: float | None
    champion_rate: float | None


def gate(challenger: ModelBundle, champion: ModelBundle | None, holdout: pd.DataFrame, warn_rate: float,
         tolerance: float) -> GateDecision:
    """Whether ``challenger`` may replace ``champion``, judged on the ``holdout`` windows. With no
    champion the challenger is promoted (a first model; its hold-out rate is reported).

    Parameters
    ----------
    warn_rate : float
        The challenger must flag at most this share of the hold-out windows.
    tolerance : float
        ...and at most the champion's share plus this (absolute) margin.
    """
    holdout = holdout[holdout["sensor"].astype(str).isin(list(challenger.models))]
    challenger_rate = anomaly_rate(challenger, holdout)
    if champion is None:  # nothing to keep instead: promote, and say how it does on the hold-out
        note = "" if challenger_rate is None or challenger_rate <= warn_rate else (
            f"; it flags {challenger_rate:.2%} of the window's last hour, over the WARN rate {warn_rate:.2%}")
        return GateDecision(True, f"first model, trained on the named window{note}", challenger_rate, None)
    champion_rate = anomaly_rate(champion, holdout)
    if challenger_rate is None:
        return GateDecision(False, "no hold-out windows to compare it with the current model", None, champion_rate)
    if challenger_rate > warn_rate:
        return GateDecision(False, f"flags {challenger_rate:.2%} of the hold-out windows, over the WARN rate "
                                   f"{warn_rate:.2%}", challenger_rate, champion_rate)
    if champion_rate is not None and challenger_rate > champion_rate + tolerance:
        return GateDecision(False, f"flags {challenger_rate:.2%} of the hold-out windows, materially more than the "
                                   f"current model's {champion_rate:.2%}", challenger_rate, champion_rate)
    return GateDecision(True, "passed the hold-out", challenger_rate, champion_rate)
