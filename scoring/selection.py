"""Choosing each sensor's detector kind by what it finds in the sensor's own data.

For every trainable kind, a model is fitted on the sensor's training windows and then scores
a copy of them with anomalies planted in (spikes, level shifts, stuck values, variance
changes), sized by the sensor's own window-to-window noise; where the windows carry their
extremes (``low``, ``high``), the planted anomalies move them too, as the readings would. The kind that detects the most
planted anomalies (events: at least one window of each flagged), while flagging at most
twice the false-alarm budget of the windows left as they were, is chosen; ties go to the
default kind. The choice and its figures are recorded, so ``bscore train --select`` says why.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from scoring.detectors import DEFAULT_KIND, TRAINABLE, FitOptions, TrainingError
from scoring.training import fit_series, window_extremes_columns

SEGMENTS = {"spike": 1, "level_shift": 12, "stuck": 24, "variance": 24}  # windows each
PLANTED_SHARE = 0.03


@dataclass(frozen=True)
class KindChoice:
    """The kind chosen for a sensor and every kind's figures on its planted copy."""

    kind: str
    recall: dict[str, float]  # kind -> share of planted anomalies detected
    false_alarms: dict[str, float]  # kind -> share of untouched windows flagged

    def describe(self) -> str:
        figures = ", ".join(f"{k}: recall {self.recall[k]:.2f}, false alarms {self.false_alarms[k]:.2%}"
                            for k in sorted(self.recall))
        return f"{self.kind} ({figures})"


def noise_scale(values: np.ndarray) -> float:
    """The sensor's window-to-window noise: a robust spread of its first differences."""
    steps = np.diff(values)
    mad = float(np.median(np.abs(steps - np.median(steps)))) * 1.4826 / np.sqrt(2)
    return mad if mad > 0 else float(np.std(steps)) or max(1e-6 * abs(float(np.median(values))), 1e-9)


def plant_anomalies(values: np.ndarray, seed: int = 0) -> tuple[np.ndarray, list[tuple[int, int]], np.ndarray]:
    """A copy of ``values`` with anomalies of each kind planted in turn, the planted
    ``(start, stop)`` segments, and the mask of windows no segment touched (nor the ``margin``
    after one, where the recent past the detectors judge by still holds it)."""
    x, _, _, segments, untouched = plant_anomalies_with_extremes(values, None, None, seed)
    return x, segments, untouched


def plant_anomalies_with_extremes(values: np.ndarray, low: np.ndarray | None, high: np.ndarray | None,
                                  seed: int = 0):
    """:func:`plant_anomalies` on windows with their smallest and largest reading (``None``:
    not recorded); returns ``(values, low, high, segments, untouched)``, the extremes moved as
    the planted readings move them: with the window for spikes and level shifts, onto the
    repeated value for stuck ones, spread four times as far for variance changes."""
    rng = np.random.default_rng(seed)
    x, n, sigma = np.array(values, dtype=float), len(values), noise_scale(values)
    below = None if low is None else x - np.asarray(low, dtype=float)  # each window's reach below its mean
    above = None if high is None else np.asarray(high, dtype=float) - x
    kinds, segments = list(SEGMENTS), []
    untouched = np.ones(n, dtype=bool)
    count = max(len(kinds), int(PLANTED_SHARE * n / np.mean(list(SEGMENTS.values()))))
    starts = np.linspace(30, n - 60, count).astype(int) if n > 120 else np.array([], dtype=int)
    for number, start in enumerate(starts):
        kind = kinds[number % len(kinds)]
        stop = min(start + SEGMENTS[kind], n)
        sign = rng.choice([-1.0, 1.0])
        if kind == "spike":
            x[start:stop] += sign * 8 * sigma
        elif kind == "level_shift":
            x[start:stop] += sign * 6 * sigma
        elif kind == "stuck":
            x[start:stop] = x[start - 1]
            for reach in (below, above):
                if reach is not None:
                    reach[start:stop] = 0.0
        else:
            x[start:stop] = x[start:stop].mean() + (x[start:stop] - x[start:stop].mean()) * 4 + \
                rng.normal(0, 2 * sigma, stop - start)
            for reach in (below, above):
                if reach is not None:
                    reach[start:stop] *= 4
        segments.append((start, stop))
        untouched[start:min(stop + 24, n)] = False
    return (x, None if below is None else x - below, None if above is None else x + above, segments, untouched)


def choose_kind(values: np.ndarray, options: FitOptions = FitOptions(), low: np.ndarray | None = None,
                high: np.ndarray | None = None) -> KindChoice:
    """The trainable kind with the best recall of anomalies planted into ``values`` (and their
    extremes ``low``, ``high`` where recorded) within twice the false-alarm budget (the default
    kind when none is within it or on a tie)."""
    from scoring.engine import CompiledModels, Runs

    planted, planted_low, planted_high, segments, untouched = plant_anomalies_with_extremes(values, low, high)
    recall, false_alarms = {}, {}
    for name in TRAINABLE:
        try:
            model = fit_series(values, name, options, low=low, high=high)
        except TrainingError:
            continue
        runs, _ = Runs.of(np.zeros(len(planted), dtype=np.int64))
        _, flagged = CompiledModels([model]).decision(planted, runs.with_model(np.zeros(1, dtype=np.int64)),
                                                      low=planted_low, high=planted_high)
        recall[name] = float(np.mean([flagged[a:b].any() for a, b in segments])) if segments else 0.0
        false_alarms[name] = float(flagged[untouched].mean()) if untouched.any() else 0.0
    within = [k for k in recall if false_alarms[k] <= 2 * options.false_alarm_rate]
    candidates = within or [k for k in recall if k == DEFAULT_KIND] or list(recall)
    best = max(candidates, key=lambda k: (recall[k], k == DEFAULT_KIND)) if candidates else DEFAULT_KIND
    return KindChoice(best, recall, false_alarms)


def choose_kinds(windows, options: FitOptions = FitOptions()) -> dict[str, KindChoice]:
    """Each sensor's choice, from a device's ``ts, sensor, value`` training windows (each sensor
    judged against its share of the device's budget, as ``scoring.training`` fits it)."""
    by_sensor = windows.groupby("sensor", sort=True, observed=True)
    per_sensor = replace(options, false_alarm_rate=options.false_alarm_rate / max(by_sensor.ngroups, 1))
    chosen = {}
    for sensor, rows in by_sensor:
        if len(rows) >= options.min_samples:
            rows = rows.sort_values("ts")
            chosen[str(sensor)] = choose_kind(rows["value"].to_numpy(), per_sensor, **window_extremes_columns(rows))
    return chosen
