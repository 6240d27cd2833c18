"""Plan an hour's aggregation in time slices of bounded size, from its raw parts' names alone.

A fleet's hour can hold tens of millions of readings; aggregating it whole needs memory that
grows with the fleet. Repeats of a reading share its time stamp and a window's readings lie in
``(end - length, end]``, so cutting the hour at window boundaries keeps both de-duplication and
every window exact within a slice. The slices are chosen so that each holds about
:data:`SLICE_READINGS` readings at most, estimated by spreading each part's row count evenly
over the time span its name records (:func:`bscore_assets.storage.part_layout`); an
:class:`HourTally` sums what the slices report. No I/O, no Dagster.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from scoring.raw_parts import RepeatCounts
from scoring.time_units import HOUR_SECONDS

# Readings per slice: ~25 bytes each as read, a few times that while de-duplicating and
# averaging, so a slice needs a few hundred MB whatever the fleet's size.
SLICE_READINGS = 3_500_000


@dataclass(frozen=True)
class HourSlice:
    """Readings with ``after < ts - hour <= until`` seconds, found in the parts numbered ``parts``.

    The first slice has no lower bound and the last no upper one, so that readings outside the
    hour (which the SQL store then refuses) are not silently dropped.
    """

    after: int | None
    until: int | None
    parts: tuple[int, ...]


def _window_of(second: np.ndarray, window_seconds: int, windows: int) -> np.ndarray:
    """The window (0-based within the hour) a reading ``second`` after the hour's start falls in."""
    return np.clip(-(-second // window_seconds) - 1, 0, windows - 1)


def readings_per_window(spans: Sequence[tuple[int, int, int]], window_seconds: int) -> np.ndarray:
    """Estimated readings in each window of the hour, each part's ``(rows, first_second,
    last_second)`` spread evenly over the windows its span touches."""
    windows = HOUR_SECONDS // window_seconds
    if not len(spans):
        return np.zeros(windows)
    rows, first, last = (np.asarray(column, dtype=np.int64) for column in zip(*spans))
    lo, hi = _window_of(first, window_seconds, windows), _window_of(last, window_seconds, windows)
    share = rows / (hi - lo + 1)
    change = np.zeros(windows + 1)
    np.add.at(change, lo, share)
    np.add.at(change, hi + 1, -share)
    return np.cumsum(change[:-1])


def plan_hour_slices(spans: Sequence[tuple[int, int, int]], window_seconds: int,
                     budget: int = SLICE_READINGS) -> list[HourSlice]:
    """Cut an hour at window boundaries into slices of at most ``budget`` estimated readings.

    Parameters
    ----------
    spans : sequence of (rows, first_second, last_second)
        Each raw part's layout, in part order (:func:`bscore_assets.storage.part_layout`).
    window_seconds : int
        Window length; divides 3600.
    budget : int
        Readings a slice may hold; a single window holding more becomes a slice of its own.

    Returns
    -------
    list of HourSlice
        In time order, covering the hour; each names the parts (by position, in part order)
        whose span overlaps it.

    Examples
    --------
    >>> [(s.after, s.until, s.parts) for s in plan_hour_slices([(60, 0, 60), (60, 60, 120)], 60, budget=100)]
    [(None, 60, (0, 1)), (60, None, (1,))]
    """
    load = readings_per_window(spans, window_seconds)
    cuts, held = [], 0.0
    for window, readings in enumerate(load):
        if held and held + readings > budget:
            cuts.append(window * window_seconds)
            held = 0.0
        held += readings
    bounds = [None, *cuts, None]
    return [HourSlice(after, until, _overlapping(spans, after, until)) for after, until in zip(bounds, bounds[1:])]


def _overlapping(spans, after: int | None, until: int | None) -> tuple[int, ...]:
    """Parts whose readings may lie in ``(after, until]``: a part's readings lie within
    ``[first_second, last_second]``."""
    return tuple(i for i, (_, first, last) in enumerate(spans)
                 if (after is None or last > after) and (until is None or first <= until))


@dataclass
class HourTally:
    """What an hour's aggregation reports, summed over its slices: the counts its checks
    reconcile (readings in = sum of the windows' reading counts), the devices seen, and the
    repeats dropped before (:class:`scoring.raw_parts.RepeatCounts`, filled by the reader)."""

    windows: int = 0
    readings: int = 0
    non_finite: int = 0
    devices: set = field(default_factory=set)
    sensors: set = field(default_factory=set)
    sent: set = field(default_factory=set)
    repeats: RepeatCounts = field(default_factory=RepeatCounts)

    def add(self, readings: pa.Table, windows: pa.Table) -> None:
        """Count one slice's de-duplicated readings and the windows computed from them."""
        self.windows += windows.num_rows
        self.readings += readings.num_rows
        self.non_finite += int((~np.isfinite(windows["value"].to_numpy())).sum())
        self.devices.update(pc.unique(windows["device"]).to_pylist())
        self.sensors.update(pc.unique(windows["sensor"]).to_pylist())
        if readings.num_rows:
            self.sent.update(readings["device"].unique().to_pylist())

    def metadata(self) -> dict:
        """``windows, readings, devices, sensors, non_finite, expected``, and the repeats dropped:
        ``redelivered`` (same value) and ``conflicts`` (another value, ignored). The devices that
        sent readings (``sent``) are compared with those SQL holds windows of by the caller."""
        return {"windows": self.windows, "readings": self.readings, "devices": len(self.devices),
                "sensors": len(self.sensors), "non_finite": self.non_finite,
                "expected": [self.windows, self.readings],
                "redelivered": self.repeats.redelivered, "conflicts": self.repeats.conflicts}
