"""The robust kind: each window against its own recent past, thresholds set from the data.

Four features of a sensor's windows in time order, computed for many series at once in one
compiled pass (``scoring.detectors.robust_kernel``); the first three are trimmed of the recent
past's largest and smallest window so that one anomalous window does not echo into the next ones:

- ``jump``: how far the window lies from the mean of the ``lag`` windows before it (spikes,
  level shifts, a sensor that starts to move). Against the recent past rather than a fixed
  level, so daily seasonality, drift and slow regime changes are not anomalies.
- ``spread``: the standard deviation of the last ``width`` windows, judged on both sides: too
  high (the noise grew) or too low (the sensor is stuck).
- ``shift``: how far the window lies from the mean of the ``horizon`` windows before it (5
  minutes), so that a level shift is judged for as long as it lasts, not only where it starts.
- ``extremes``: how far the window's farthest reading lies from its mean, ``max(high - mean,
  mean - low)``, where windows carry their smallest and largest reading (``low``, ``high``;
  ``scoring.windows``). A spike of one reading moves a window's mean by a fifth of its size
  but its extremes by all of it. Windows without extremes (stored before they were recorded)
  and models fitted without them (``extremes_threshold`` None, as every bundle saved before)
  leave this feature out and score exactly as before.

Each feature's threshold is the value that at most a share of the false-alarm budget of the
model's own training windows exceeds, the budget split evenly over the features judged
(strictly, and never below an observed value, so quantized sensors' ties are never split; the
tail is extrapolated from the top tenth of the training values,
``scoring.detectors.base.tail_threshold``; and no upper threshold lies below the sensor's
resolution, the smallest step between its training values); the score is the smallest margin
to a threshold, in units of that threshold, and a window is anomalous where it is negative. A feature that training saw flat
(a sensor stuck half the time, or quantized) cannot fire on that side.

Anomalies in the training window (up to the WARN rate: the gate leaves out hours over it)
must not widen a threshold past them: each upper threshold is at most ``GUARD`` times the
feature's training 98th percentile, and the extremes' at most ``EXTREMES_GUARD`` times theirs.
The spread of readings within a window is tight and a spike left in training lies far outside
it, so the extremes take the tighter bound; 4 for every feature (before extremes) cut into
regime-switching sensors' normal jumps and spreads (1.2 % of their clean windows flagged on
the simulated fleet), 6 does not, and SKAB and SMD score as well or better
(docs/quality-benchmark.md). (The stuck side has no such guard: a sensor whose
training windows are flat more often than its budget cannot tell stuck from normal, and its
model says so in ``not_judged``.)

A sensor constant in training gets an explicit rule instead, reported as ``rule: constant``:
a window is anomalous when it differs from the window before it by more than a tolerance
(``CONSTANT_RELATIVE_TOLERANCE`` of its value, at least ``CONSTANT_ABSOLUTE_TOLERANCE``), so it
flags the sensor moving, not every window after a change to a new constant.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from scoring.detectors.base import FitOptions, TrainingError, lower_threshold, tail_threshold, upper_threshold
from scoring.safe_format import ModelFormatError, model_metadata

LAG = 12  # windows of recent past a window's jump is measured from (1 minute of 5 s windows)
HORIZON = 60  # windows of recent past a window's shift is measured from (5 minutes)
WIDTH = 12  # windows whose spread is judged
MAX_LAG = 10_000
CONSTANT_RELATIVE_TOLERANCE = 1e-6
CONSTANT_ABSOLUTE_TOLERANCE = 1e-9
GUARD, GUARD_FROM = 6.0, 0.02  # at most 6 times the 98th percentile...
EXTREMES_GUARD = 3.0  # ...and the extremes at most 3 times theirs
RULES = ("robust", "constant")
_PARAMETERS = ("center", "jump_threshold", "spread_high", "spread_low", "shift_threshold", "unit")


@dataclass(frozen=True)
class RobustModel:
    """A sensor's robust model.

    ``center`` is the training median (series are centred on it before summing); a window's
    jump is ``|x - mean(previous lag windows)|`` (against ``center`` for a series' first
    window), its spread the population standard deviation of its last ``width`` windows
    (``width`` 0: not judged). ``unit`` floors the thresholds' units so that a zero threshold
    still gives a finite score. ``extremes_threshold`` bounds ``max(high - mean, mean - low)``
    of windows that recorded their extremes; ``None``: not judged (models fitted on windows
    without extremes, and every model saved before they were recorded).
    """

    center: float
    jump_threshold: float
    spread_high: float
    spread_low: float
    shift_threshold: float
    unit: float
    lag: int = LAG
    width: int = WIDTH
    horizon: int = 0
    rule: str = "robust"
    metadata: dict = field(default_factory=dict)
    extremes_threshold: float | None = None

    def __post_init__(self):
        for name in _PARAMETERS:
            value = getattr(self, name)
            if not isinstance(value, (int, float, np.integer, np.floating)) or not math.isfinite(value):
                raise ModelFormatError(f"{name} {value!r} is not a finite number")
            object.__setattr__(self, name, float(value))
        if self.rule not in RULES:
            raise ModelFormatError(f"rule {self.rule!r} is not one of {RULES}")
        for name in ("lag", "width", "horizon"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or not 0 <= value <= MAX_LAG:
                raise ModelFormatError(f"{name} {value!r} is outside 0..{MAX_LAG}")
        if self.width in (1, 2, 3):
            raise ModelFormatError(f"width {self.width} has no trimmed spread: use 0 (not judged) or at least 4")
        if self.unit <= 0 or min(self.jump_threshold, self.spread_high, self.spread_low, self.shift_threshold) < 0:
            raise ModelFormatError("thresholds must not be negative and unit must be positive")
        if self.extremes_threshold is not None:
            value = self.extremes_threshold
            if not isinstance(value, (int, float, np.integer, np.floating)) or not math.isfinite(value) or value < 0:
                raise ModelFormatError(f"extremes_threshold {value!r} is not a finite number >= 0")
            object.__setattr__(self, "extremes_threshold", float(value))

    def row(self) -> list[float]:
        """The parameters as the compiled kernel reads them, the extremes threshold last (NaN: none)."""
        extremes = np.nan if self.extremes_threshold is None else self.extremes_threshold
        return [getattr(self, name) for name in _PARAMETERS] + [extremes]


def window_extremes(values: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """How far each window's farthest reading lies from its mean: ``max(high - value, value - low)``
    (NaN where the window did not record its extremes)."""
    values = np.asarray(values, dtype=np.float64)
    return np.maximum(np.asarray(high, dtype=np.float64) - values, values - np.asarray(low, dtype=np.float64))


def series_features(x: np.ndarray, length: np.ndarray, center: np.ndarray, lag: int, width: int, horizon: int = 0
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``jump``, ``spread`` and ``shift`` of every row of consecutive series (``length`` rows
    each, series ``k`` centred on ``center[k]``).

    Both ``jump`` and ``spread`` are trimmed: the largest and the smallest window of the recent
    past are left out of its mean and spread (once at least three are there), so that one
    anomalous window is not echoed into the judgement of the windows after it. A series' first
    window is judged against the centre, and against fewer than ``lag`` windows the jump is
    scaled as if it had its full number (for independent noise), so a series' first windows are
    judged like the rest. ``spread`` is NaN where a series has fewer than ``width`` windows so
    far (or ``width`` is 0), ``shift`` where it has fewer than ``horizon`` (or ``horizon`` is
    0); ``shift`` is not trimmed (one window moves a mean of ``horizon`` little).
    """
    from scoring.detectors import robust_kernel

    return robust_kernel.features(np.ascontiguousarray(x, dtype=np.float64), np.asarray(length, dtype=np.int64),
                                  np.asarray(center, dtype=np.float64), lag, width, horizon)


def series_scores(x: np.ndarray, length: np.ndarray, params: np.ndarray, lag: int, width: int, horizon: int,
                  low: np.ndarray | None = None, high: np.ndarray | None = None) -> np.ndarray:
    """The smallest margin to a threshold of every row of consecutive series, in units of that
    threshold: negative where a threshold is crossed. ``params[k]`` holds series ``k``'s
    ``_PARAMETERS`` and, optionally, its extremes threshold (NaN: not judged); a NaN spread,
    shift or extreme is not judged. ``low`` and ``high``: every row's smallest and largest
    reading (both or neither)."""
    from scoring.detectors import robust_kernel

    if (low is None) != (high is None):
        raise ValueError("low and high come together: pass both or neither")
    none = np.empty(0)
    return robust_kernel.scores(np.ascontiguousarray(x, dtype=np.float64), np.asarray(length, dtype=np.int64),
                                np.ascontiguousarray(params, dtype=np.float64), lag, width, horizon,
                                none if low is None else np.ascontiguousarray(low, dtype=np.float64),
                                none if high is None else np.ascontiguousarray(high, dtype=np.float64))


def _guarded_upper(values: np.ndarray, rate: float, guard: float = GUARD) -> float:
    """The budget's upper threshold (its tail fitted), at most ``guard`` times the 98th
    percentile where that is positive (a sensor flat 98 % of the time has no bulk to guard)."""
    threshold, bulk = tail_threshold(values, rate), upper_threshold(values, GUARD_FROM)
    return min(threshold, guard * bulk) if bulk > 0 else threshold


def _training_extremes(x: np.ndarray, low: np.ndarray | None, high: np.ndarray | None, unit: float
                       ) -> np.ndarray:
    """The training windows' extremes that were recorded; none unless at least half were, nor
    when none exceeds ``unit`` (windows of one reading each: their extremes say nothing the mean does not,
    and judging them would take a share of the budget from the other features)."""
    if low is None and high is None:
        return np.empty(0)
    if low is None or high is None or len(low) != len(x) or len(high) != len(x):
        raise TrainingError(f"low and high must both hold one value per window ({len(x)})")
    extremes = window_extremes(x, low, high)
    recorded = extremes[np.isfinite(extremes)]
    return recorded if 2 * len(recorded) >= len(x) and np.any(recorded > unit) else np.empty(0)


class _RobustBatch:
    """Robust models sharing ``lag``, ``width`` and ``horizon``, their parameters as arrays."""

    def __init__(self, models: list[RobustModel]):
        self.lag, self.width, self.horizon = models[0].lag, models[0].width, models[0].horizon
        self.params = np.array([m.row() for m in models], dtype=np.float64)
        # Without an extremes threshold among them, the batch scores as before extremes were recorded.
        self.uses_extremes = bool(np.isfinite(self.params[:, -1]).any())

    def decision(self, x: np.ndarray, model: np.ndarray, length: np.ndarray, low: np.ndarray | None = None,
                 high: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        score = series_scores(x, length, self.params[model], self.lag, self.width, self.horizon, low, high)
        return score, score < 0

    def decision_into(self, x: np.ndarray, start: np.ndarray, model: np.ndarray, length: np.ndarray,
                      low: np.ndarray | None, high: np.ndarray | None, score: np.ndarray,
                      flagged: np.ndarray) -> None:
        """``decision`` of the series ``x[start[k]:start[k] + length[k]]`` (``x`` float64,
        contiguous, as ``low`` and ``high``), written into the same rows of ``score`` and
        ``flagged``."""
        from scoring.detectors import robust_kernel

        none = np.empty(0)
        robust_kernel.scores_into(x, np.asarray(start, dtype=np.int64), np.asarray(length, dtype=np.int64),
                                  np.ascontiguousarray(self.params[model]), self.lag, self.width, self.horizon,
                                  none if low is None else low, none if high is None else high, score, flagged)


class RobustKind:
    """Jump and spread against the sensor's own recent past, thresholds from its training windows."""

    name = "robust"
    model_type = RobustModel
    uses_extremes = True  # fit and score take the windows' low and high readings

    def fit(self, values: np.ndarray, options: FitOptions = FitOptions(), trained_from=None,
            trained_to=None, low: np.ndarray | None = None, high: np.ndarray | None = None) -> RobustModel:
        """A sensor's model from its training windows in time order; with ``low`` and ``high``
        (each window's smallest and largest reading, NaN where not recorded) it also judges
        extremes, when at least half the windows recorded them."""
        x = np.asarray(values, dtype=np.float64).reshape(-1)
        if len(x) < options.min_samples:
            raise TrainingError(f"{len(x)} windows, fewer than min_samples={options.min_samples}")
        if not np.isfinite(x).all():
            raise TrainingError(f"{int((~np.isfinite(x)).sum())} of {len(x)} windows are NaN or infinite")
        center = float(np.median(x))
        magnitude = max(abs(center), float(np.max(np.abs(x))))
        if not math.isfinite(magnitude * magnitude * len(x)):
            raise TrainingError(f"values up to {magnitude:.6g} overflow their sums of squares")
        rate = options.false_alarm_rate
        metadata = model_metadata(None, len(x), trained_from, trained_to, kind=self.name, false_alarm_rate=rate)
        if np.ptp(x) == 0:
            tolerance = max(CONSTANT_RELATIVE_TOLERANCE * abs(center), CONSTANT_ABSOLUTE_TOLERANCE)
            return RobustModel(center, tolerance, 0.0, 0.0, 0.0, tolerance, lag=1, width=0, rule="constant",
                               metadata={**metadata, "training_flag_rate": 0.0})
        length = np.array([len(x)])
        width = WIDTH if len(x) >= 2 * WIDTH else 0
        horizon = HORIZON if len(x) >= 4 * HORIZON else 0
        jump, spread, shift = series_features(x, length, np.array([center]), LAG, width, horizon)
        judged, moved = spread[~np.isnan(spread)], shift[~np.isnan(shift)]
        unit = max(float(np.finfo(float).eps) * magnitude * 16, CONSTANT_ABSOLUTE_TOLERANCE)
        extremes = _training_extremes(x, low, high, unit)
        share = rate / (1 + 2 * bool(len(judged)) + bool(len(moved)) + bool(len(extremes)))
        # A quantized sensor cannot move by less than its step: no upper threshold lies below it.
        resolution = float(np.diff(np.unique(x)).min())
        model = RobustModel(
            center=center,
            jump_threshold=max(_guarded_upper(jump, share), resolution),
            spread_high=max(_guarded_upper(judged, share), resolution) if len(judged) else 0.0,
            spread_low=lower_threshold(judged, share) if len(judged) else 0.0,
            shift_threshold=max(_guarded_upper(moved, share), resolution) if len(moved) else 0.0,
            unit=unit, lag=LAG, width=width, horizon=horizon, metadata=metadata,
            extremes_threshold=max(_guarded_upper(extremes, share, EXTREMES_GUARD), resolution) if len(extremes) else None)
        recorded = len(extremes) > 0
        score = series_scores(x, length, np.array([model.row()]), LAG, width, horizon,
                              *((low, high) if recorded else (None, None)))
        flat = [side for side, threshold in (("stuck", model.spread_low), ("jumps", model.jump_threshold))
                if threshold == 0.0]
        return replace(model, metadata={**metadata, "training_flag_rate": float(np.mean(score < 0)),
                                        "not_judged": flat + ([] if width else ["spread"])
                                        + ([] if horizon else ["shift"]) + ([] if recorded else ["extremes"])})

    def to_entry(self, model: RobustModel) -> tuple[dict[str, np.ndarray], dict]:
        arrays = {"params": np.array([getattr(model, name) for name in _PARAMETERS], dtype=np.float64)}
        if model.extremes_threshold is not None:  # absent, a model saves exactly as before extremes
            arrays["extremes_threshold"] = np.array([model.extremes_threshold], dtype=np.float64)
        return arrays, {"lag": model.lag, "width": model.width, "horizon": model.horizon, "rule": model.rule}

    def from_entry(self, spec: dict, arrays: dict[str, np.ndarray]) -> RobustModel:
        params = arrays["params"]
        if params.shape != (len(_PARAMETERS),):
            raise ModelFormatError(f"params has shape {params.shape}, not ({len(_PARAMETERS)},)")
        extremes = arrays.get("extremes_threshold")
        if extremes is not None and extremes.shape != (1,):
            raise ModelFormatError(f"extremes_threshold has shape {extremes.shape}, not (1,)")
        return RobustModel(*params.tolist(), lag=spec["lag"], width=spec["width"], horizon=spec["horizon"],
                           rule=spec["rule"], metadata=spec.get("metadata", {}),
                           extremes_threshold=None if extremes is None else float(extremes[0]))

    def compile(self, models: list[RobustModel]) -> list[tuple[np.ndarray, _RobustBatch]]:
        shapes = sorted({(m.lag, m.width, m.horizon) for m in models})
        batches = []
        for shape in shapes:
            members = np.array([i for i, m in enumerate(models) if (m.lag, m.width, m.horizon) == shape])
            batches.append((members, _RobustBatch([models[i] for i in members])))
        return batches


KIND = RobustKind()
