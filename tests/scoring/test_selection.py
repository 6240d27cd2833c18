"""Choosing a sensor's kind by the anomalies planted into its own training windows."""

import numpy as np
import pandas as pd

from scoring.detectors import FitOptions
from scoring.selection import SEGMENTS, choose_kind, choose_kinds, plant_anomalies


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
