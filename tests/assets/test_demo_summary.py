"""The demo's ground truth from the simulator's labels, and its per-sensor table with false alarms."""

import numpy as np
import pandas as pd

from bscore_assets.demo import demo_fleet, detection_summary, planted_windows

START = pd.Timestamp("2026-01-01T00:00")


def test_truth_windows_are_those_holding_a_labelled_reading():
    readings, labels = demo_fleet("realistic", 3, 4, START, 1, 1, 0.05, seed=2, window=5)
    truth = planted_windows(readings[readings["ts"] > START + pd.Timedelta(hours=1)], 5)
    assert len(truth) == 3 * 4 * 720 and truth["planted"].any()
    for label in labels.itertuples():
        mine = truth[(truth["device"] == label.device) & (truth["sensor"] == label.sensor)]
        # A window (end - 5 s, end] holds a reading of the span (start, end] iff it overlaps it.
        overlaps = (mine["ts"] > label.start) & (mine["ts"] - pd.Timedelta(seconds=5) < label.end)
        assert mine.loc[overlaps, "planted"].all()
    assert truth["planted"].sum() <= sum(
        int(np.ceil((lab.end - lab.start) / pd.Timedelta(seconds=5))) + 1 for lab in labels.itertuples())


def test_summary_counts_false_alarms_among_windows_without_an_anomaly():
    ts = pd.date_range(START, periods=4, freq="5s")
    truth = pd.DataFrame({"device": "1", "sensor": "1", "ts": ts, "planted": [True, False, False, False]})
    predictions = truth.drop(columns="planted").assign(is_anomaly=[True, True, False, False])
    row = detection_summary(predictions, truth).iloc[0]
    assert (row["windows_scored"], row["anomalies_flagged"], row["planted"]) == (4, 2, 1)
    assert (row["precision"], row["recall"], row["false_alarm_rate"]) == (0.5, 1.0, round(1 / 3, 4))
