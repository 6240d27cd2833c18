"""Evaluation against labels: a hand-computed case, the baselines, and hostile labels files."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose

from scoring.evaluation import evaluate, labelled_windows, labels_from_flags, read_labels, write_labels

T0 = pd.Timestamp("2026-01-01T00:00:00")


def _windows(device, sensor, flagged_at, n=10):
    """``n`` windows stamped 00:00:05 .. (index i is stamped (i + 1) * 5 s)."""
    ts = T0 + pd.to_timedelta(5 * (np.arange(n) + 1), unit="s")
    flags = np.zeros(n, dtype=bool)
    flags[list(flagged_at)] = True
    return pd.DataFrame({"ts": ts, "device": device, "sensor": sensor, "is_anomaly": flags})


def _labels(*rows):
    return pd.DataFrame([{"device": d, "start": T0 + pd.Timedelta(seconds=a), "end": T0 + pd.Timedelta(seconds=b),
                          "sensor": s, "kind": ""} for d, a, b, s in rows])


# Device d1, sensors s1 and s2, windows 0..9 stamped 5 s .. 50 s.
# Label (10 s, 25 s] without a sensor -> windows 2, 3, 4 of both sensors (10 s itself excluded).
# Label (40 s, 45 s] on s2            -> window 8 of s2.
# s1 flags 3, 6; s2 flags 0, 8, 9.
#
# s1: labelled {2,3,4}, flagged {3,6}: tp 1, fp 1, fn 2, tn 6; precision 1/2, recall 1/3,
#     F1 2*(1/2)(1/3)/(5/6) = 0.4, false alarms 1/7. One event {2,3,4}, detected: event recall 1.
#     Alarms {3} (true) and {6}: alarm precision 1/2; event F1 2*(1/2)*1/(3/2) = 2/3.
#     Point-adjusted: {2,3,4} all found -> tp 3, fp 1: precision 3/4, recall 1, F1 6/7.
# s2: labelled {2,3,4,8}, flagged {0,8,9}: tp 1, fp 2, fn 3, tn 4; precision 1/3, recall 1/4,
#     F1 2/7, false alarms 2/6. Events {2,3,4} (missed), {8} (found): event recall 1/2.
#     Alarms {0}, {8,9} (true): alarm precision 1/2; event F1 1/2.
# Overall (sensor windows): tp 2, fp 3, fn 5, tn 10; precision 2/5, recall 2/7, F1 1/3,
#     false alarms 3/13; events 2 of 3 found; alarms 2 of 4 true; event F1 4/7.
# Device d1 (any sensor flagged): flagged {0,3,6,8,9}, labelled {2,3,4,8}: tp 2, fp 3, fn 2,
#     tn 3; precision 2/5, recall 1/2, F1 4/9, false alarms 3/6. Events {2,3,4}, {8}: both
#     found. Alarms {0}, {3} (true), {6}, {8,9} (true): 2/4; event F1 2/3.
HAND_PREDICTIONS = pd.concat([_windows("d1", "s1", [3, 6]), _windows("d1", "s2", [0, 8, 9])], ignore_index=True)
HAND_LABELS = _labels(("d1", 10, 25, ""), ("d1", 40, 45, "s2"))


def test_point_wise_and_event_wise_figures_match_the_hand_computation():
    result = evaluate(HAND_PREDICTIONS, HAND_LABELS)
    s = result.sensors
    assert s.loc["s1", ["tp", "fp", "fn", "tn"]].tolist() == [1, 1, 2, 6]
    assert s.loc["s2", ["tp", "fp", "fn", "tn"]].tolist() == [1, 2, 3, 4]
    assert s.loc["overall", ["tp", "fp", "fn", "tn"]].tolist() == [2, 3, 5, 10]
    assert_allclose(s.loc["s1", ["precision", "recall", "f1", "false_alarm_rate"]].astype(float),
                    [1 / 2, 1 / 3, 0.4, 1 / 7], atol=1e-12)
    assert_allclose(s.loc["s2", ["precision", "recall", "f1", "false_alarm_rate"]].astype(float),
                    [1 / 3, 1 / 4, 2 / 7, 1 / 3], atol=1e-12)
    assert_allclose(s.loc["overall", ["precision", "recall", "f1", "false_alarm_rate"]].astype(float),
                    [2 / 5, 2 / 7, 1 / 3, 3 / 13], atol=1e-12)
    assert s.loc["s1", ["events", "events_detected", "alarms", "true_alarms"]].tolist() == [1, 1, 2, 1]
    assert s.loc["s2", ["events", "events_detected", "alarms", "true_alarms"]].tolist() == [2, 1, 2, 1]
    assert_allclose(s.loc[["s1", "s2", "overall"], "event_recall"].astype(float), [1, 1 / 2, 2 / 3], atol=1e-12)
    assert_allclose(s.loc[["s1", "s2", "overall"], "alarm_precision"].astype(float), [1 / 2, 1 / 2, 1 / 2], atol=1e-12)
    assert_allclose(s.loc[["s1", "s2", "overall"], "event_f1"].astype(float), [2 / 3, 1 / 2, 4 / 7], atol=1e-12)
    # Composite F1, event recall with point-wise precision: s1 2*(1/2)*1/(3/2) = 2/3;
    # s2 2*(1/3)(1/2)/(5/6) = 0.4; overall 2*(2/5)(2/3)/(16/15) = 1/2.
    assert_allclose(s.loc[["s1", "s2", "overall"], "composite_f1"].astype(float), [2 / 3, 0.4, 0.5], atol=1e-12)
    assert "pa_f1" not in s.columns, "point-adjusted figures only when asked"
    assert result.unmatched_labels == 0


def test_device_windows_are_labelled_by_device_or_sensor_labels_and_flagged_by_any_sensor():
    d = evaluate(HAND_PREDICTIONS, HAND_LABELS).devices
    assert d.loc["d1", ["windows", "tp", "fp", "fn", "tn"]].tolist() == [10, 2, 3, 2, 3]
    assert_allclose(d.loc["d1", ["precision", "recall", "f1", "false_alarm_rate"]].astype(float),
                    [2 / 5, 1 / 2, 4 / 9, 1 / 2], atol=1e-12)
    assert d.loc["d1", ["events", "events_detected", "alarms", "true_alarms"]].tolist() == [2, 2, 4, 2]
    assert_allclose(d.loc["d1", "event_f1"], 2 / 3, atol=1e-12)


def test_a_given_device_verdict_replaces_any_sensor_flagged():
    verdict = _windows("d1", "", [2]).drop(columns="sensor")
    d = evaluate(HAND_PREDICTIONS, HAND_LABELS, device_predictions=verdict).devices
    assert d.loc["d1", ["tp", "fp", "fn", "tn"]].tolist() == [1, 0, 3, 6]


def test_point_adjusted_counts_every_window_of_a_detected_event():
    s = evaluate(HAND_PREDICTIONS, HAND_LABELS, point_adjusted=True).sensors
    # s1 as in the hand computation; s2: event {8} found, {2,3,4} missed -> tp 1, fp 2: 1/3, 1/4.
    assert_allclose(s.loc["s1", ["pa_precision", "pa_recall", "pa_f1"]].astype(float), [3 / 4, 1, 6 / 7], atol=1e-12)
    assert_allclose(s.loc["s2", ["pa_precision", "pa_recall", "pa_f1"]].astype(float), [1 / 3, 1 / 4, 2 / 7], atol=1e-12)


def test_flag_everything_and_random_baselines_in_closed_form():
    s = evaluate(HAND_PREDICTIONS, HAND_LABELS).sensors
    # s1: prevalence 3/10, flag rate q = 2/10. Flag everything: precision 0.3, recall 1,
    # F1 0.6/1.3; one alarm (the whole series), true, so its event F1 is 1 and its composite
    # F1 (precision 0.3, event recall 1) 0.6/1.3. Random at q: precision 0.3, recall 0.2,
    # F1 2*0.06/0.5 = 0.24, false alarms 0.2; the 3-window event found with P 1 - 0.8**3.
    assert_allclose(s.loc["s1", ["all_precision", "all_f1", "all_alarm_precision", "all_event_f1",
                                 "all_composite_f1"]].astype(float), [0.3, 0.6 / 1.3, 1.0, 1.0, 0.6 / 1.3], atol=1e-12)
    assert_allclose(s.loc["s1", ["random_precision", "random_recall", "random_f1", "random_false_alarm_rate",
                                 "random_event_recall"]].astype(float),
                    [0.3, 0.2, 0.24, 0.2, 1 - 0.8**3], atol=1e-12)


def _runs(flags):
    """(start, end) of each maximal run of True, both included."""
    out, start = [], None
    for i, f in enumerate(list(flags) + [False]):
        if f and start is None:
            start = i
        if not f and start is not None:
            out.append((start, i - 1))
            start = None
    return out


@pytest.mark.parametrize("labelled_at", [[2, 3, 4], [0, 5, 9], [4], []])
def test_random_alarm_precision_and_event_recall_equal_the_exhaustive_expectation(labelled_at):
    """Every one of the 2**10 flag patterns, weighted by its probability at q = 0.3."""
    n, q = 10, 0.3
    labelled = np.zeros(n, dtype=bool)
    labelled[labelled_at] = True
    events = _runs(labelled)
    alarms = true_alarms = recall = 0.0
    for pattern in itertools.product([False, True], repeat=n):
        p = np.prod([q if f else 1 - q for f in pattern])
        runs = _runs(pattern)
        alarms += p * len(runs)
        true_alarms += p * sum(labelled[a : b + 1].any() for a, b in runs)
        recall += p * (np.mean([any(pattern[a : b + 1]) for a, b in events]) if events else 0)
    # Any pattern with the flag rate q gives the same expectations: 3 flags of 10.
    predictions = _windows("d", "s", [1, 6, 7])
    rows = [("d", 5 * i, 5 * (i + 1), "") for i in labelled_at]
    s = evaluate(predictions, _labels(*rows) if rows else _labels(("other", 0, 5, ""))).sensors
    assert_allclose(s.loc["s", "random_alarm_precision"], true_alarms / alarms, atol=1e-12)
    if events:
        assert_allclose(s.loc["s", "random_event_recall"], recall, atol=1e-12)
    else:
        assert np.isnan(s.loc["s", "random_event_recall"])


def test_a_span_covers_windows_after_its_start_up_to_and_including_its_end():
    windows = _windows("d", "s", [])
    marked = labelled_windows(windows, _labels(("d", 5, 15, "")))
    assert np.flatnonzero(marked).tolist() == [1, 2]  # stamped 10 s and 15 s, not 5 s


def test_sensor_labels_apply_to_their_sensor_and_device_labels_to_all():
    windows = pd.concat([_windows("d", "a", []), _windows("d", "b", []), _windows("e", "a", [])], ignore_index=True)
    marked = labelled_windows(windows, _labels(("d", 0, 10, "a"), ("d", 20, 25, "")))
    got = windows.assign(marked=marked).query("marked").groupby(["device", "sensor"]).size().to_dict()
    assert got == {("d", "a"): 3, ("d", "b"): 1}


def test_a_label_on_no_stored_window_is_counted():
    result = evaluate(HAND_PREDICTIONS, pd.concat([HAND_LABELS, _labels(("d9", 0, 50, ""), ("d1", 100, 200, ""))]))
    assert result.unmatched_labels == 2


def test_labels_round_trip_and_offsets_become_utc(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("device,start,end,sensor,kind\n"
                    "d1,2026-01-01T01:00:00+01:00,2026-01-01T00:00:30Z,s1,spike\n"
                    "d2,2026-01-01T00:00,2026-01-01T00:01,,\n\n")
    labels = read_labels(path)
    assert labels["start"].tolist() == [T0, T0]
    assert labels["end"].tolist() == [T0 + pd.Timedelta(seconds=30), T0 + pd.Timedelta(minutes=1)]
    assert labels["sensor"].tolist() == ["s1", ""] and labels["kind"].tolist() == ["spike", ""]
    pd.testing.assert_frame_equal(read_labels(write_labels(labels, tmp_path / "again.csv")), labels)


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "empty file"),
        ("device,start\nd,2026-01-01T00:00\n", "line 1: missing column(s) end"),
        ("device,start,end,sensr\nd,2026-01-01,2026-01-02,a\n", "unknown column(s) sensr"),
        ("device,start,end,end\n", "repeated column(s) end"),
        ("device,start,end\nd,2026-01-01,2026-01-02\nd,yesterday,2026-01-02\n", "line 3: start 'yesterday'"),
        ("device,start,end\nd,2026-01-01,2026-13-02\n", "line 2: end '2026-13-02' is not an ISO-8601"),
        ("device,start,end\nd,2026-01-02,2026-01-01\n", "line 2: end 2026-01-01 is not after start"),
        ("device,start,end\nd,2026-01-02,2026-01-02\n", "is not after start"),
        ("device,start,end\n ,2026-01-01,2026-01-02\n", "line 2: empty device"),
        ("device,start,end\nd,2026-01-01\n", "line 2: 2 field(s), the header has 3"),
        ("device,start,end\nd,2026-01-01," + "9" * 5000 + "\n", "longer than 1000 characters"),
    ],
)
def test_hostile_labels_files_name_the_file_the_line_and_the_fault(tmp_path, text, message):
    path = tmp_path / "labels.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match="labels.csv") as raised:
        read_labels(path)
    assert message in str(raised.value)


def test_too_many_labels_and_binary_files_are_refused(tmp_path):
    path = tmp_path / "many.csv"
    path.write_text("device,start,end\n" + "d,2026-01-01,2026-01-02\n" * 4)
    with pytest.raises(ValueError, match=r"many.csv, line 5: more than 3 labels"):
        read_labels(path, max_labels=3)
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"device,start,end\n\xff\xfe\x00garbage\n")
    with pytest.raises(ValueError, match="binary.csv: not UTF-8"):
        read_labels(binary)


def test_marked_readings_label_their_windows_and_consecutive_windows_form_one_span():
    seconds = [2, 3, 12, 21, 26, 4]
    devices = ["d", "d", "d", "d", "d", "e"]
    spans = labels_from_flags(T0 + pd.to_timedelta(seconds, unit="s"), pd.Series(devices), 5, kind="anomaly")
    # d: 2 s and 3 s in the window (0, 5]; 12 s in (10, 15]; 21 s and 26 s in (20, 25] and (25, 30],
    # consecutive windows, so one span (20, 30]. e: 4 s in (0, 5].
    second = pd.Timedelta(seconds=1)
    assert spans["device"].tolist() == ["d", "d", "d", "e"]
    assert spans["start"].tolist() == [T0, T0 + 10 * second, T0 + 20 * second, T0]
    assert spans["end"].tolist() == [T0 + 5 * second, T0 + 15 * second, T0 + 30 * second, T0 + 5 * second]
    assert set(spans["kind"]) == {"anomaly"} and set(spans["sensor"]) == {""}
