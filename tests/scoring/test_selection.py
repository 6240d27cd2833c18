"""Choosing a sensor's kind by the anomalies planted into its own training windows."""

import numpy as np
import pandas as pd
from numpy.testing import assert_allclose

from scoring.detectors import FitOptions
from scoring.selection import SEGMENTS, choose_kind, choose_kinds, plant_anomalies, plant_anomalies_with_extremes


def test_planted_anomalies_change_only_their_segments():
    values = np.random.default_rng(0).normal(20, 1, 2000)
    planted, segments, untouched = plant_anomalies(values)
    changed = np.flatnonzero(planted != values)
    inside = np.zeros(len(values), dtype=bool)
    for start, stop in segments:
        inside[start:stop] = True
    assert len(segments) >= len(SEGMENTS) and inside[changed].all()
    assert not (untouched & inside).any()


def test_each_sensor_gets_a_trainable_kind_with_its_figures_recorded():
    rng = np.random.default_rng(1)
    ts = pd.date_range("2026-01-01", periods=2000, freq="5s")
    windows = pd.concat([pd.DataFrame({"ts": ts, "sensor": "noisy", "value": rng.normal(20, 1, 2000)}),
                         pd.DataFrame({"ts": ts, "sensor": "steps", "value": np.round(rng.normal(5, 2, 2000))})])
    choices = choose_kinds(windows, FitOptions())
    assert sorted(choices) == ["noisy", "steps"]
    for choice in choices.values():
        assert choice.kind in ("robust", "svm") and set(choice.recall) == {"robust", "svm"}
        assert all(0 <= r <= 1 for r in choice.recall.values()) and choice.kind in choice.describe()
    # On plain noise the robust kind finds the planted anomalies within its budget.
    noisy = choose_kind(windows[windows["sensor"] == "noisy"]["value"].to_numpy(), FitOptions(false_alarm_rate=0.0025))
    assert noisy.recall["robust"] >= 0.75 and noisy.false_alarms["robust"] <= 0.005


def test_planted_anomalies_move_the_windows_extremes_as_their_readings_would():
    rng = np.random.default_rng(2)
    values = rng.normal(20, 1, 2000)
    reach = rng.exponential(1.0, (2, 2000))
    low, high = values - reach[0], values + reach[1]
    planted, planted_low, planted_high, segments, untouched = plant_anomalies_with_extremes(values, low, high)
    assert np.array_equal(planted, plant_anomalies(values)[0])  # the means as without extremes
    assert np.array_equal(planted_low[untouched], low[untouched]) and np.array_equal(planted_high[untouched],
                                                                                       high[untouched])
    kinds = list(SEGMENTS)
    for number, (start, stop) in enumerate(segments):
        window = slice(start, stop)
        if kinds[number % len(kinds)] == "stuck":  # every reading repeats one value
            assert (planted_low[window] == planted[window]).all() and (planted_high[window] == planted[window]).all()
        elif kinds[number % len(kinds)] == "variance":
            assert_allclose(planted_high[window] - planted[window], 4 * reach[1][window])
        else:  # spikes and level shifts move the whole window
            assert_allclose(planted_high[window] - planted[window], reach[1][window])
            assert_allclose(planted[window] - planted_low[window], reach[0][window])


def test_windows_with_extremes_choose_with_their_planted_extremes():
    from tests.scoring.test_robust_extremes import windows_of_readings

    windows = windows_of_readings(np.random.default_rng(3).normal(20, 1, 5 * 3000))
    choices = choose_kinds(windows[["ts", "sensor", "value", "low", "high"]], FitOptions())
    assert choices["s"].recall["robust"] >= 0.75 and choices["s"].false_alarms["robust"] <= 0.01
