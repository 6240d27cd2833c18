"""The robust kind's features and margins, compiled: one pass over each series, no temporaries.

The same figures as written in ``scoring.detectors.robust`` (and checked against a plain
computation in tests/scoring/test_robust.py), window by window in a loop that numba compiles
once per machine (``cache=True`` keeps the machine code beside this module or in numba's user
cache) and that releases the GIL, so the engine's threads score blocks on every core. NumPy's
whole-array passes took 3 to 4 times as long as the reference kind's scoring: about forty
passes over every window for the trimmed means, spreads and margins. Each window's sums, largest
and smallest reading come from two entries of a block pass (``_block_sums``), and margins are
multiplies by a per-series reciprocal: summing each window afresh and dividing at every row
took 1.8 times as long (52 against 93 M windows per CPU second). Either way a score is the same
to within rounding (about 1e-13 of it); the flags are the same.

Imported on the robust kind's first fit or score, not with the registry, so commands that
score no robust model do not pay numba's import.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

_OPTIONS = {"cache": True, "nogil": True, "error_model": "numpy"}
CANCELLATION = 1e-6  # a variance this small against the mean square is summed again, exactly


@njit(**_OPTIONS)
def _block_sums(x, first, n, center, w, stats):
    """Van Herk/Gil-Werman blocks over ``x[first:first + n] - center``: for blocks of ``w`` rows,
    ``stats[0:4, i]`` hold the sum, sum of squares, largest and smallest from the start of
    row ``i``'s block to ``i``, ``stats[4:8, i]`` the same from ``i`` to its block's end. Any
    ``w`` consecutive rows then combine from two entries, so each window costs the same
    however wide it is, and no running sum carries rounding from one window to the next."""
    for start in range(0, n, w):
        end = min(start + w, n)
        _running(x, first, center, start, end, 1, stats, 0)
        _running(x, first, center, end - 1, start - 1, -1, stats, 4)


@njit(**_OPTIONS)
def _running(x, first, center, begin, stop, step, stats, out):
    """Sum, sum of squares, largest and smallest of ``x[first + begin] - center`` onwards by
    ``step``, so far at each row, into ``stats[out:out + 4]``."""
    total, squares, largest, smallest = 0.0, 0.0, -np.inf, np.inf
    for i in range(begin, stop, step):
        value = x[first + i] - center
        total += value
        squares += value * value
        largest = value if value > largest else largest
        smallest = value if value < smallest else smallest
        stats[out, i], stats[out + 1, i], stats[out + 2, i], stats[out + 3, i] = total, squares, largest, smallest


@njit(**_OPTIONS)
def _series(x, first, n, center, lag, width, horizon, params, jump, spread, shift, score, lows, highs, stats):
    """One series, ``x[first:first + n]`` centred on ``center``: its features into ``jump``,
    ``spread`` and ``shift`` (NaN where not judged) when they are not empty, and its margins
    to ``params`` (a centre, then the thresholds and unit, then the extremes threshold: NaN or
    absent where not judged) into ``score`` when that is not. ``lows`` and ``highs``, the
    windows' smallest and largest readings, are empty when no window recorded them.
    ``stats`` is scratch space of 8 x at least ``n``."""
    keep_features, judge = len(jump) > 0, len(score) > 0
    extremes = judge and len(lows) > 0 and len(params) > 6 and not math.isnan(params[6])
    # Margins as multiplies: one division per series, not several per window.
    jump_scale, spread_scale, stuck_scale, shift_scale = 0.0, 0.0, 0.0, 0.0
    if judge:
        unit = params[5]
        jump_scale, spread_scale = 1.0 / max(params[1], unit), 1.0 / max(params[2], unit)
        stuck_scale, shift_scale = 1.0 / max(params[3], unit), 1.0 / max(params[4], unit)
    extremes_scale = 1.0 / max(params[6], params[5]) if extremes else 0.0
    full = lag - 2 if lag >= 3 else lag
    # With lag == width (the default) the jump's window (the lag windows before a row) is the
    # spread's window of the row before: one block pass (_block_sums) serves both, each window
    # from two of its entries. Other shapes sum each window afresh at every row.
    shared = lag == width and lag >= 4
    if shared:
        _block_sums(x, first, n, center, lag, stats)
    per_full, per_kept = 1.0 / full, 1.0 / (width - 2) if width > 2 else 0.0
    per_horizon = 1.0 / horizon if horizon > 0 else 0.0
    horizon_sum = 0.0
    previous_total, previous_high, previous_low = 0.0, 0.0, 0.0
    window_total, window_squares, window_high, window_low = 0.0, 0.0, 0.0, 0.0
    for i in range(n):
        row = first + i
        value = x[row] - center
        count = min(i, lag)
        row_spread, row_shift = np.nan, np.nan
        if shared and i + 1 >= lag:
            # Rows i + 1 - lag .. i: the whole of one block, or the tail of one and head of the next.
            start = i + 1 - lag
            if start % lag == 0:
                window_total, window_squares = stats[0, i], stats[1, i]
                window_high, window_low = stats[2, i], stats[3, i]
            else:
                window_total, window_squares = stats[4, start] + stats[0, i], stats[5, start] + stats[1, i]
                window_high, window_low = max(stats[6, start], stats[2, i]), min(stats[7, start], stats[3, i])
        if shared and i >= lag:
            # The jump's window is the spread's window of the row before.
            row_jump = abs(value - (previous_total - previous_high - previous_low) * per_full)
            mean = (window_total - window_high - window_low) * per_kept
            second = (window_squares - window_high * window_high - window_low * window_low) * per_kept
            variance = second - mean * mean
            if variance <= CANCELLATION * second:
                # Nearly flat (stuck) windows: the difference above has lost most of its digits,
                # so sum the squared deviations from the mean instead.
                variance = -(window_high - mean) ** 2 - (window_low - mean) ** 2
                for j in range(row + 1 - width, row + 1):
                    variance += (x[j] - center - mean) ** 2
                variance *= per_kept
            row_spread = math.sqrt(max(variance, 0.0))
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
        if shared and i + 1 >= lag:
            previous_total, previous_high, previous_low = window_total, window_high, window_low
        if horizon > 0 and i >= horizon:
            if i % horizon == 0:
                # Summed afresh once per horizon: a huge window leaving a running sum would
                # otherwise leave its rounding error in it for the rest of the series.
                horizon_sum = 0.0
                for j in range(row - horizon, row):
                    horizon_sum += x[j] - center
            row_shift = abs(value - horizon_sum * per_horizon)
            horizon_sum -= x[row - horizon] - center
        if horizon > 0:
            horizon_sum += value
        if keep_features:
            jump[row], spread[row], shift[row] = row_jump, row_spread, row_shift
        if judge:
            margin = (params[1] - row_jump) * jump_scale
            if not math.isnan(row_spread):
                margin = min(margin, (params[2] - row_spread) * spread_scale)
                if params[3] > 0:
                    margin = min(margin, (row_spread - params[3]) * stuck_scale)
            if not math.isnan(row_shift):
                margin = min(margin, (params[4] - row_shift) * shift_scale)
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
    stats = np.empty((8, length.max() if len(length) else 0))
    first = 0
    for k in range(len(length)):
        _series(x, first, length[k], center[k], lag, width, horizon, none, jump, spread, shift, none, none, none,
                stats)
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
    stats = np.empty((8, length.max() if len(length) else 0))
    first = 0
    for k in range(len(length)):
        _series(x, first, length[k], params[k, 0], lag, width, horizon, params[k], none, none, none, score, low, high,
                stats)
        first += length[k]
    return score


@njit(**_OPTIONS)
def scores_into(x, start, length, params, lag, width, horizon, low, high, score, flagged):
    """``scores`` of series lying anywhere in ``x``: series ``k`` is ``x[start[k]:start[k] +
    length[k]]``; its margins go to the same rows of ``score`` and ``flagged`` (margin < 0), so
    that a batch whose series are spread among others' is neither gathered nor scattered."""
    none = np.empty(0)
    stats = np.empty((8, length.max() if len(length) else 0))
    for k in range(len(length)):
        _series(x, start[k], length[k], params[k, 0], lag, width, horizon, params[k], none, none, none, score, low,
                high, stats)
        for row in range(start[k], start[k] + length[k]):
            flagged[row] = score[row] < 0
