"""The robust kind: each window against its own recent past, thresholds set from the data.

Three features of a sensor's windows in time order, each cheap to compute for many series at
once (cumulative sums reset at every series, trimmed of the window's largest and smallest
value so that one anomalous window does not echo into the next ones):

- ``jump``: how far the window lies from the mean of the ``lag`` windows before it (spikes,
  level shifts, a sensor that starts to move). Against the recent past rather than a fixed
  level, so daily seasonality, drift and slow regime changes are not anomalies.
- ``spread``: the standard deviation of the last ``width`` windows, judged on both sides: too
  high (the noise grew) or too low (the sensor is stuck).
- ``shift``: how far the window lies from the mean of the ``horizon`` windows before it (5
  minutes), so that a level shift is judged for as long as it lasts, not only where it starts.
- ``shift``: how far the window lies from the mean of the ``horizon`` windows before it (5
  minutes), so that a level shift is judged for as long as it lasts, not only where it starts.

Each feature's threshold is the value that at most a quarter of the false-alarm budget of the
model's own training windows exceeds (strictly, and never below an observed value, so
quantized sensors' ties are never split; the tail is extrapolated from the top tenth of the
training values, ``scoring.detectors.base.tail_threshold``; and no upper threshold lies below
the sensor's resolution, the smallest step between its training values); the score is the smallest margin to a threshold, in units of that
threshold, and a window is anomalous where it is negative. A feature that training saw flat
(a sensor stuck half the time, or quantized) cannot fire on that side.

Anomalies in the training window (up to the WARN rate: the gate leaves out hours over it)
must not widen a threshold past them: ``GUARD`` bounds each upper threshold to ``GUARD`` times
the feature's training 98th percentile. (The stuck side has no such guard: a sensor whose
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
GUARD, GUARD_FROM = 4.0, 0.02  # at most 4 times the 98th percentile
RULES = ("robust", "constant")
_PARAMETERS = ("center", "jump_threshold", "spread_high", "spread_low", "shift_threshold", "unit")


@dataclass(frozen=True)
class RobustModel:
    """A sensor's robust model.

    ``center`` is the training median (series are centred on it before summing); a window's
    jump is ``|x - mean(previous lag windows)|`` (against ``center`` for a series' first
    window), its spread the population standard deviation of its last ``width`` windows
    (``width`` 0: not judged). ``unit`` floors the thresholds' units so that a zero threshold
    still gives a finite score.
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


def _window_extremes(xc: np.ndarray, row: np.ndarray, series_start: np.ndarray, first_back: int, last_back: int
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Largest and smallest value of each row's window ``row - last_back .. row - first_back``
    (within its series; -inf and +inf where the window is empty)."""
    largest, smallest = np.full(len(xc), -np.inf), np.full(len(xc), np.inf)
    for back in range(first_back, last_back + 1):
        inside = row[back:] - back >= series_start[back:]
        np.maximum(largest[back:], np.where(inside, xc[:len(xc) - back], -np.inf), out=largest[back:])
        np.minimum(smallest[back:], np.where(inside, xc[:len(xc) - back], np.inf), out=smallest[back:])
    return largest, smallest


def series_features(x: np.ndarray, length: np.ndarray, center: np.ndarray, lag: int, width: int, horizon: int = 0
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``jump``, ``spread`` and ``shift`` of every row of consecutive series (``length`` rows each).

    Both are trimmed: the largest and the smallest window of the recent past are left out of
    its mean and spread (once at least three are there), so that one anomalous window is not
    echoed into the judgement of the windows after it. ``center`` is per row. ``spread`` is
    NaN where a series has fewer than ``width`` windows so far (or ``width`` is 0), ``shift``
    where it has fewer than ``horizon`` (or ``horizon`` is 0); ``shift`` is not trimmed (one
    window moves a mean of ``horizon`` little).
    """
    n = len(x)
    xc = np.asarray(x, dtype=np.float64) - center
    row = np.arange(n)
    series_start = np.repeat(np.cumsum(length) - length, length)
    sums = np.concatenate([[0.0], np.cumsum(xc)])
    if lag > 0:
        first = np.maximum(row - lag, series_start)
        count = row - first
        total = sums[row] - sums[first]
        if lag >= 3:
            largest, smallest = _window_extremes(xc, row, series_start, 1, lag)
            trim = count >= 3
            total[trim] -= largest[trim] + smallest[trim]
            count = np.where(trim, count - 2, count)
        previous = total / np.maximum(count, 1)
        # Against fewer windows the mean is noisier: scale the jump as if it had its full
        # number (for independent noise), so a series' first windows are judged like the rest.
        # A series' first window is judged against the centre (previous is 0 there).
        full = lag - 2 if lag >= 3 else lag
        shrink = np.sqrt((1 + 1 / full) / (1 + 1 / np.maximum(count, 1)))
        jump = np.abs(xc - previous) * np.where(count > 0, shrink, 1.0)
    else:
        jump = np.abs(xc)
    spread = np.full(n, np.nan)
    if width > 0:
        squares = np.concatenate([[0.0], np.cumsum(xc * xc)])
        first = row - width + 1
        whole = first >= series_start
        lo, hi = first[whole], row[whole] + 1
        total, total_squares, kept = sums[hi] - sums[lo], squares[hi] - squares[lo], width
        if width >= 4:
            largest, smallest = (e[whole] for e in _window_extremes(xc, row, series_start, 0, width - 1))
            total, total_squares, kept = total - largest - smallest, total_squares - largest ** 2 - smallest ** 2, width - 2
        mean = total / kept
        spread[whole] = np.sqrt(np.maximum(total_squares / kept - mean * mean, 0.0))
    shift = np.full(n, np.nan)
    if horizon > 0:
        whole = row - horizon >= series_start
        shift[whole] = np.abs(xc[whole] - (sums[row[whole]] - sums[row[whole] - horizon]) / horizon)
    return jump, spread, shift


def _margins(jump, spread, shift, jump_threshold, spread_high, spread_low, shift_threshold, unit) -> np.ndarray:
    """The smallest margin to a threshold, in units of it: negative where a threshold is crossed.
    Parameters are per row or scalars; a NaN spread or shift is not judged."""
    jump_threshold, spread_high, spread_low, shift_threshold, unit, _ = np.broadcast_arrays(
        jump_threshold, spread_high, spread_low, shift_threshold, unit, jump)
    score = (jump_threshold - jump) / np.maximum(jump_threshold, unit)
    high = (spread_high - spread) / np.maximum(spread_high, unit)
    low = np.where(spread_low > 0, (spread - spread_low) / np.maximum(spread_low, unit), np.inf)
    score = np.where(np.isnan(spread), score, np.minimum(score, np.minimum(high, low)))
    moved = (shift_threshold - shift) / np.maximum(shift_threshold, unit)
    return np.where(np.isnan(shift), score, np.minimum(score, moved))


def _guarded_upper(values: np.ndarray, rate: float) -> float:
    """The budget's upper threshold (its tail fitted), at most ``GUARD`` times the 98th
    percentile where that is positive (a sensor flat 98 % of the time has no bulk to guard)."""
    threshold, bulk = tail_threshold(values, rate), upper_threshold(values, GUARD_FROM)
    return min(threshold, GUARD * bulk) if bulk > 0 else threshold


def _sliding(padded: np.ndarray, size: int, reduce) -> np.ndarray:
    """``reduce`` (np.maximum or np.minimum) over every ``size`` consecutive columns of a 2-D
    array, by doubling spans: log2(size) passes instead of ``size``. Column ``j`` of the result
    covers columns ``j .. j + size - 1``."""
    span, spans = 1, {1: padded}
    while span * 2 <= size:
        previous = spans[span]
        spans[span * 2] = reduce(previous[:, :-span], previous[:, span:])
        span *= 2
    result = spans[span][:, :padded.shape[1] - size + 1]
    rest = size - span
    if rest:
        part = _sliding(padded, rest, reduce) if rest not in spans else spans[rest]
        result = reduce(result, part[:, span:span + result.shape[1]])
    return result


def grid_features(xc: np.ndarray, lag: int, width: int, horizon: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``series_features`` of series of equal length, one per row of ``xc`` (already centred):
    the same figures, with the windows' extremes by doubling spans over padded rows."""
    rows, n = xc.shape
    col = np.arange(n)
    sums = np.zeros((rows, n + 1))
    np.cumsum(xc, axis=1, out=sums[:, 1:])
    if lag > 0:
        count = np.minimum(col, lag)
        total = sums[:, :n].copy()  # the sum of the ``count`` windows before each column
        total[:, lag:] -= sums[:, :n - lag] if n > lag else 0.0
        if lag >= 3:
            pad = np.full((rows, lag), -np.inf)
            largest = _sliding(np.concatenate([pad, xc], axis=1), lag, np.maximum)[:, :n]
            smallest = _sliding(np.concatenate([-pad, xc], axis=1), lag, np.minimum)[:, :n]
            trim = count >= 3
            total[:, trim] -= largest[:, trim] + smallest[:, trim]
            count = np.where(trim, count - 2, count)
        previous = total / np.maximum(count, 1)
        full = lag - 2 if lag >= 3 else lag
        shrink = np.where(count > 0, np.sqrt((1 + 1 / full) / (1 + 1 / np.maximum(count, 1))), 1.0)
        jump = np.abs(xc - previous) * shrink
    else:
        jump = np.abs(xc)
    spread = np.full((rows, n), np.nan)
    if 0 < width <= n:
        squares = np.zeros((rows, n + 1))
        np.cumsum(xc * xc, axis=1, out=squares[:, 1:])
        total = sums[:, width:] - sums[:, :-width]
        total_squares = squares[:, width:] - squares[:, :-width]
        kept = width
        if width >= 4:
            largest, smallest = _sliding(xc, width, np.maximum), _sliding(xc, width, np.minimum)
            total, total_squares = total - largest - smallest, total_squares - largest ** 2 - smallest ** 2
            kept = width - 2
        mean = total / kept
        spread[:, width - 1:] = np.sqrt(np.maximum(total_squares / kept - mean * mean, 0.0))
    shift = np.full((rows, n), np.nan)
    if 0 < horizon < n:
        shift[:, horizon:] = np.abs(xc[:, horizon:] - (sums[:, horizon:n] - sums[:, :n - horizon]) / horizon)
    return jump, spread, shift


class _RobustBatch:
    """Robust models sharing ``lag``, ``width`` and ``horizon``, their parameters as arrays."""

    def __init__(self, models: list[RobustModel]):
        self.lag, self.width, self.horizon = models[0].lag, models[0].width, models[0].horizon
        self.params = {name: np.array([getattr(m, name) for m in models]) for name in _PARAMETERS}

    def decision(self, x: np.ndarray, model: np.ndarray, length: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if (length == length[0]).all():
            # Series of equal length (every model has the hour's windows) form a grid: each
            # model's parameters broadcast along its row.
            per_series = {name: values[model][:, None] for name, values in self.params.items()}
            grid = np.asarray(x, dtype=np.float64).reshape(len(length), int(length[0])) - per_series["center"]
            features = grid_features(grid, self.lag, self.width, self.horizon)
            score = _margins(*features, *(per_series[name] for name in _PARAMETERS[1:])).reshape(-1)
            return score, score < 0
        per_row = {name: np.repeat(values[model], length) for name, values in self.params.items()}
        features = series_features(x, length, per_row["center"], self.lag, self.width, self.horizon)
        score = _margins(*features, *(per_row[name] for name in _PARAMETERS[1:]))
        return score, score < 0


class RobustKind:
    """Jump and spread against the sensor's own recent past, thresholds from its training windows."""

    name = "robust"
    model_type = RobustModel

    def fit(self, values: np.ndarray, options: FitOptions = FitOptions(), trained_from=None,
            trained_to=None) -> RobustModel:
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
        jump, spread, shift = series_features(x, length, np.full(len(x), center), LAG, width, horizon)
        judged, moved = spread[~np.isnan(spread)], shift[~np.isnan(shift)]
        share = rate / (1 + 2 * bool(len(judged)) + bool(len(moved)))
        unit = max(float(np.finfo(float).eps) * magnitude * 16, CONSTANT_ABSOLUTE_TOLERANCE)
        # A quantized sensor cannot move by less than its step: no upper threshold lies below it.
        resolution = float(np.diff(np.unique(x)).min())
        model = RobustModel(
            center=center,
            jump_threshold=max(_guarded_upper(jump, share), resolution),
            spread_high=max(_guarded_upper(judged, share), resolution) if len(judged) else 0.0,
            spread_low=lower_threshold(judged, share) if len(judged) else 0.0,
            shift_threshold=max(_guarded_upper(moved, share), resolution) if len(moved) else 0.0,
            unit=unit, lag=LAG, width=width, horizon=horizon, metadata=metadata)
        score = _margins(jump, spread, shift, *(getattr(model, name) for name in _PARAMETERS[1:]))
        flat = [side for side, threshold in (("stuck", model.spread_low), ("jumps", model.jump_threshold))
                if threshold == 0.0]
        return replace(model, metadata={**metadata, "training_flag_rate": float(np.mean(score < 0)),
                                        "not_judged": flat + ([] if width else ["spread"])
                                        + ([] if horizon else ["shift"])})

    def to_entry(self, model: RobustModel) -> tuple[dict[str, np.ndarray], dict]:
        arrays = {"params": np.array([getattr(model, name) for name in _PARAMETERS], dtype=np.float64)}
        return arrays, {"lag": model.lag, "width": model.width, "horizon": model.horizon, "rule": model.rule}

    def from_entry(self, spec: dict, arrays: dict[str, np.ndarray]) -> RobustModel:
        params = arrays["params"]
        if params.shape != (len(_PARAMETERS),):
            raise ModelFormatError(f"params has shape {params.shape}, not ({len(_PARAMETERS)},)")
        return RobustModel(*params.tolist(), lag=spec["lag"], width=spec["width"], horizon=spec["horizon"],
                           rule=spec["rule"],
                           metadata=spec.get("metadata", {}))

    def compile(self, models: list[RobustModel]) -> list[tuple[np.ndarray, _RobustBatch]]:
        shapes = sorted({(m.lag, m.width, m.horizon) for m in models})
        batches = []
        for shape in shapes:
            members = np.array([i for i, m in enumerate(models) if (m.lag, m.width, m.horizon) == shape])
            batches.append((members, _RobustBatch([models[i] for i in members])))
        return batches


KIND = RobustKind()
