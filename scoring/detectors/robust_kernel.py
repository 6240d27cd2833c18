"""The robust kind's features and margins, compiled: one pass over each series, no temporaries.

The same figures as written in ``scoring.detectors.robust`` (and checked against a plain
computation in tests/scoring/test_robust.py), window by window in a loop that numba compiles
once per machine (``cache=True`` keeps the machine code beside this module or in numba's user
cache) and that releases the GIL, so the engine's threads score blocks on every core. NumPy's
whole-array passes took 3 to 4 times as long as the reference kind's scoring: about forty
passes over every window for the trimmed means, spreads and margins.

Imported on the robust kind's first fit or score, not with the registry, so commands that
score no robust model do not pay numba's import.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

_OPTIONS = {"cache": True, "nogil": True, "error_model": "numpy"}


@njit(**_OPTIONS)
def _margin(threshold, value, unit):
    return (threshold - value) / max(threshold, unit)


@njit(**_OPTIONS)
def _series(x, first, n, center, lag, width, horizon, params, jump, spread, shift, score, lows, highs):
    """One series, ``x[first:first + n]`` centred on ``center``: its features into ``jump``,
    ``spread`` and ``shift`` (NaN where not judged) when they are not empty, and its margins
    to ``params`` (a centre, then the thresholds and unit, then the extremes threshold: NaN or
    absent where not judged) into ``score`` when that is not. ``lows`` and ``highs``, the
    windows' smallest and largest readings, are empty when no window recorded them."""
    keep_features, judge = len(jump) > 0, len(score) > 0
    extremes = judge and len(lows) > 0 and len(params) > 6 and not math.isnan(params[6])
    # The extremes margin as a multiply: one division per series, not one per window.
    extremes_scale = 1.0 / max(params[6], params[5]) if extremes else 0.0
    full = lag - 2 if lag >= 3 else lag
    # The lag and width windows are summed afresh at every row (exact, and short); the
    # horizon's by a running sum. With lag == width (the default) the two windows share all
    # but one window each, so one loop serves both.
    shared = lag == width and lag >= 4
    horizon_sum = 0.0
    for i in range(n):
        row = first + i
        value = x[row] - center
        count = min(i, lag)
        row_spread, row_shift = np.nan, np.nan
        if shared and i >= lag:
            total, squares, largest, smallest = 0.0, 0.0, -np.inf, np.inf
            for j in range(row + 1 - lag, row):
                past = x[j] - center
                total += past
                squares += past * past
                largest = max(largest, past)
                smallest = min(smallest, past)
            oldest = x[row - lag] - center
            row_jump = abs(value - (total + oldest - max(largest, oldest) - min(smallest, oldest)) / full)
            high, low = max(largest, value), min(smallest, value)
            mean = (total + value - high - low) / (width - 2)
            row_spread = math.sqrt(max((squares + value * value - high * high - low * low) / (width - 2)
                                       - mean * mean, 0.0))
        else:
            if count > 0:
                total, largest, smallest = 0.0, -np.inf, np.inf
                for j in range(row - count, row):
                    past = x[j] - center
                    total += past
                    largest = max(largest, past)
                    smallest = min(smallest, past)
                kept = count
                if lag >= 3 and count >= 3:
                    total -= largest + smallest
                    kept = count - 2
                shrink = math.sqrt((1.0 + 1.0 / full) / (1.0 + 1.0 / kept))
                row_jump = abs(value - total / kept) * shrink
            else:
                row_jump = abs(value)
            if width > 0 and i + 1 >= width:
                total, squares, largest, smallest = 0.0, 0.0, -np.inf, np.inf
                for j in range(row + 1 - width, row + 1):
                    recent = x[j] - center
                    total += recent
                    squares += recent * recent
                    largest = max(largest, recent)
                    smallest = min(smallest, recent)
                kept = width
                if width >= 4:
                    total -= largest + smallest
                    squares -= largest * largest + smallest * smallest
                    kept = width - 2
                mean = total / kept
                row_spread = math.sqrt(max(squares / kept - mean * mean, 0.0))
        if horizon > 0 and i >= horizon:
            if i % horizon == 0:
                # Summed afresh once per horizon: a huge window leaving a running sum would
                # otherwise leave its rounding error in it for the rest of the series.
                horizon_sum = 0.0
                for j in range(row - horizon, row):
                    horizon_sum += x[j] - center
            row_shift = abs(value - horizon_sum / horizon)
            horizon_sum -= x[row - horizon] - center
        if horizon > 0:
            horizon_sum += value
        if keep_features:
            jump[row], spread[row], shift[row] = row_jump, row_spread, row_shift
        if judge:
            unit = params[5]
            margin = _margin(params[1], row_jump, unit)
            if not math.isnan(row_spread):
                margin = min(margin, _margin(params[2], row_spread, unit))
                if params[3] > 0:
                    margin = min(margin, (row_spread - params[3]) / max(params[3], unit))
            if not math.isnan(row_shift):
                margin = min(margin, _margin(params[4], row_shift, unit))
            if extremes:
                # How far the window's farthest reading lies from its mean; NaN: not recorded.
                above, below = highs[row] - x[row], x[row] - lows[row]
                if not math.isnan(above + below):
                    margin = min(margin, (params[6] - max(above, below)) * extremes_scale)
            score[row] = margin


@njit(**_OPTIONS)
def features(x, length, center, lag, width, horizon):
    """``jump``, ``spread`` and ``shift`` of every row of consecutive series, ``length[k]`` rows
    each, series ``k`` centred on ``center[k]``."""
    n = len(x)
    jump, spread, shift, none = np.empty(n), np.empty(n), np.empty(n), np.empty(0)
    first = 0
    for k in range(len(length)):
        _series(x, first, length[k], center[k], lag, width, horizon, none, jump, spread, shift, none, none, none)
        first += length[k]
    return jump, spread, shift


@njit(**_OPTIONS)
def scores(x, length, params, lag, width, horizon, low, high):
    """Each row's smallest margin to its series' thresholds, in units of each threshold
    (negative: anomalous). ``params[k]`` holds series ``k``'s centre, jump threshold, spread
    high and low, shift threshold and unit, and optionally its extremes threshold (NaN: not
    judged); a NaN spread, shift or extreme is not judged. ``low`` and ``high`` are every row's
    smallest and largest reading, or empty."""
    score, none = np.empty(len(x)), np.empty(0)
    first = 0
    for k in range(len(length)):
        _series(x, first, length[k], params[k, 0], lag, width, horizon, params[k], none, none, none, score, low, high)
        first += length[k]
    return score
