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
def _series_into(x, first, n, center, lag, width, horizon, jump, spread, shift):
    """Features of the series ``x[first:first + n]`` (centred on ``center``) into the outputs'
    same rows; ``spread`` and ``shift`` are NaN where not judged."""
    full = lag - 2 if lag >= 3 else lag
    # The lag and width windows are summed afresh at every row (exact, and short); the
    # horizon's by a running sum.
    horizon_sum = 0.0
    for i in range(n):
        row = first + i
        value = x[row] - center
        count = min(i, lag)
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
            jump[row] = abs(value - total / kept) * shrink
        else:
            jump[row] = abs(value)
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
            spread[row] = math.sqrt(max(squares / kept - mean * mean, 0.0))
        else:
            spread[row] = np.nan
        if horizon > 0 and i >= horizon:
            if i % horizon == 0:
                # Summed afresh once per horizon: a huge window leaving a running sum would
                # otherwise leave its rounding error in it for the rest of the series.
                horizon_sum = 0.0
                for j in range(row - horizon, row):
                    horizon_sum += x[j] - center
            shift[row] = abs(value - horizon_sum / horizon)
            horizon_sum -= x[row - horizon] - center
        else:
            shift[row] = np.nan
        if horizon > 0:
            horizon_sum += value


@njit(**_OPTIONS)
def features(x, length, center, lag, width, horizon):
    """``jump``, ``spread`` and ``shift`` of every row of consecutive series, ``length[k]`` rows
    each, series ``k`` centred on ``center[k]``."""
    n = len(x)
    jump, spread, shift = np.empty(n), np.empty(n), np.empty(n)
    first = 0
    for k in range(len(length)):
        _series_into(x, first, length[k], center[k], lag, width, horizon, jump, spread, shift)
        first += length[k]
    return jump, spread, shift


@njit(**_OPTIONS)
def _margin(threshold, value, unit):
    return (threshold - value) / max(threshold, unit)


@njit(**_OPTIONS)
def scores(x, length, params, lag, width, horizon):
    """Each row's smallest margin to its series' thresholds, in units of each threshold
    (negative: anomalous). ``params[k]`` holds series ``k``'s centre, jump threshold, spread
    high and low, shift threshold and unit; a NaN spread or shift is not judged."""
    jump, spread, shift = np.empty(len(x)), np.empty(len(x)), np.empty(len(x))
    score = np.empty(len(x))
    first = 0
    for k in range(len(length)):
        center, jump_threshold, spread_high, spread_low, shift_threshold, unit = params[k]
        _series_into(x, first, length[k], center, lag, width, horizon, jump, spread, shift)
        for row in range(first, first + length[k]):
            margin = _margin(jump_threshold, jump[row], unit)
            if not math.isnan(spread[row]):
                margin = min(margin, _margin(spread_high, spread[row], unit))
                if spread_low > 0:
                    margin = min(margin, (spread[row] - spread_low) / max(spread_low, unit))
            if not math.isnan(shift[row]):
                margin = min(margin, _margin(shift_threshold, shift[row], unit))
            score[row] = margin
        first += length[k]
    return score
