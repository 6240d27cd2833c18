"""Planning an hour's aggregation in slices: window-aligned, bounded, and each naming the parts it needs."""

import numpy as np
import pytest

from scoring.hour_slices import plan_hour_slices, readings_per_window
from scoring.time_units import HOUR_SECONDS


def time_ordered_parts(parts=36, rows=100_000):
    """Parts of 100 s of whole-second readings each, back to back over the hour, as a time-ordered
    landing drains: readings in ``(100 i, 100 (i + 1)]``, so the first at ``100 i + 1``."""
    step = HOUR_SECONDS // parts
    return [(rows, i * step + 1, (i + 1) * step) for i in range(parts)]


def test_estimated_readings_add_up_to_the_parts_rows():
    spans = time_ordered_parts() + [(720, 0, HOUR_SECONDS)]
    load = readings_per_window(spans, 5)
    assert len(load) == 720
    assert load.sum() == pytest.approx(sum(rows for rows, _, _ in spans))
    assert load[0] == pytest.approx(100_000 / 20 + 1)  # the first 100 s are windows 0..19


@pytest.mark.parametrize("window_seconds", [5, 60, 900])
def test_slices_cover_the_hour_at_window_boundaries_within_the_budget(window_seconds):
    spans = time_ordered_parts()
    slices = plan_hour_slices(spans, window_seconds, budget=700_000)
    assert slices[0].after is None and slices[-1].until is None
    assert all(a.until == b.after for a, b in zip(slices, slices[1:]))
    cuts = [s.after for s in slices[1:]]
    assert all(cut % window_seconds == 0 and 0 < cut < HOUR_SECONDS for cut in cuts)
    load = readings_per_window(spans, window_seconds)
    bounds = [0, *[c // window_seconds for c in cuts], len(load)]
    held = [load[a:b].sum() for a, b in zip(bounds, bounds[1:])]
    # At most the budget, or a single window holding more on its own.
    assert all(h <= 700_000 + 1e-6 or b - a == 1 for h, a, b in zip(held, bounds, bounds[1:]))
    if window_seconds < 900:
        assert len(slices) >= 3600_000 // 700_000


def test_a_slice_reads_only_the_parts_overlapping_it_and_one_without_a_span_everywhere():
    spans = time_ordered_parts() + [(10, 0, HOUR_SECONDS)]
    slices = plan_hour_slices(spans, 5, budget=1_000_500)
    whole = len(spans) - 1
    assert all(whole in s.parts for s in slices)
    reads = np.bincount([i for s in slices for i in s.parts], minlength=len(spans))
    # A part is read again only when a cut falls inside its span (here: never, cuts fall on 100 s).
    assert reads[:whole].tolist() == [1] * whole
    straddling = spans + [(1000, 990, 1010)]  # a re-delivery across the cut at 1000 s: read on both sides
    readers = [s for s in plan_hour_slices(straddling, 5, budget=1_000_500) if len(spans) in s.parts]
    assert len(readers) == 2 and 990 < readers[0].until < 1010
    for s in slices:
        for i in s.parts[:-1]:
            _, first, last = spans[i]
            assert (s.after is None or last > s.after) and (s.until is None or first <= s.until)


def test_no_parts_give_one_slice_of_the_whole_hour():
    [only] = plan_hour_slices([], 5)
    assert (only.after, only.until, only.parts) == (None, None, ())
