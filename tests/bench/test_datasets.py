"""The benchmark's data set loaders on tiny folders written in each data set's own file format."""

import numpy as np
import pandas as pd
import pytest

from bench.datasets import SMD_ORIGIN, label_spans, load_skab, load_smd, point_labels
from bench.quality import point_adjusted, pointwise

SKAB_HEADER = ("datetime;Accelerometer1RMS;Accelerometer2RMS;Current;Pressure;Temperature;Thermocouple;Voltage;"
               "Volume Flow RateRMS;anomaly;changepoint")
SKAB_SENSORS = 8


def _skab_file(path, start: str, anomaly: list[int], gap_after: int | None = None):
    """A SKAB run: one row a second (2 s after row ``gap_after``), sensors i + row / 10."""
    path.parent.mkdir(parents=True, exist_ok=True)
    times = pd.Timestamp(start) + pd.to_timedelta(np.arange(len(anomaly)), unit="s")
    if gap_after is not None:
        times = times.where(np.arange(len(anomaly)) <= gap_after, times + pd.Timedelta(seconds=1))
    lines = [SKAB_HEADER]
    for row, (ts, label) in enumerate(zip(times, anomaly)):
        values = ";".join(str(sensor + row / 10) for sensor in range(SKAB_SENSORS))
        changepoint = float(label == 1 and (row == 0 or anomaly[row - 1] == 0))
        lines.append(f"{ts:%Y-%m-%d %H:%M:%S};{values};{float(label)};{changepoint}")
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture
def skab_dir(tmp_path):
    data = tmp_path / "SKAB" / "data"
    _skab_file(data / "valve1" / "0.csv", "2020-03-09 10:14:33", [0, 0, 0, 0, 1, 1, 0, 1, 1, 1], gap_after=5)
    _skab_file(data / "valve1" / "10.csv", "2020-03-09 11:00:00", [0, 0, 0, 1, 1, 1, 1, 1])
    _skab_file(data / "valve2" / "0.csv", "2020-03-10 09:00:00", [0, 0, 0, 0, 0, 1, 1])
    _skab_file(data / "other" / "1.csv", "2020-03-11 09:00:00", [1, 1, 1, 0, 0, 0])
    free = data / "anomaly-free" / "anomaly-free.csv"
    free.parent.mkdir(parents=True)
    free.write_text(SKAB_HEADER.rsplit(";", 2)[0] + "\n" + "\n".join(
        f"2020-02-08 13:30:{second:02d};" + ";".join(str(100 + s) for s in range(SKAB_SENSORS)) for second in range(5)))
    return tmp_path / "SKAB"


def test_skab_splits_each_run_at_its_first_rows_and_labels_spans(skab_dir):
    data = load_skab(skab_dir, train_rows=3)

    devices = ["other-1", "valve1-0", "valve1-10", "valve2-0"]
    assert sorted(data.train["device"].unique()) == devices
    assert list(data.train.columns) == ["ts", "device", "sensor", "value"]
    assert data.train.groupby("device").size().to_dict() == {d: 3 * SKAB_SENSORS for d in devices}
    assert data.test.groupby("device").size().to_dict() == {
        "other-1": 3 * SKAB_SENSORS, "valve1-0": 7 * SKAB_SENSORS, "valve1-10": 5 * SKAB_SENSORS,
        "valve2-0": 4 * SKAB_SENSORS}
    assert set(data.test["sensor"]) == set(SKAB_HEADER.split(";")[1:9])  # never the label columns

    run = data.test[(data.test["device"] == "valve1-0") & (data.test["sensor"] == "Current")]
    # Row 3 onwards; row 6 comes 2 s after row 5; each row is one window stamped with its datetime.
    assert list(run["ts"]) == list(pd.to_datetime(["2020-03-09 10:14:36", "2020-03-09 10:14:37", "2020-03-09 10:14:38",
                                                  "2020-03-09 10:14:40", "2020-03-09 10:14:41", "2020-03-09 10:14:42",
                                                  "2020-03-09 10:14:43"]))
    np.testing.assert_allclose(run["value"], [2 + r / 10 for r in range(3, 10)], atol=1e-12)

    spans = data.labels.sort_values(["device", "start"]).reset_index(drop=True)
    expected = pd.DataFrame({
        "device": ["other-1", "valve1-0", "valve1-0", "valve1-10", "valve2-0"],
        "start": pd.to_datetime(["2020-03-11 08:59:59", "2020-03-09 10:14:36", "2020-03-09 10:14:40",
                                 "2020-03-09 11:00:02", "2020-03-10 09:00:04"]),
        "end": pd.to_datetime(["2020-03-11 09:00:02", "2020-03-09 10:14:38", "2020-03-09 10:14:43",
                               "2020-03-09 11:00:07", "2020-03-10 09:00:06"]),
    })
    pd.testing.assert_frame_equal(spans, expected, check_dtype=False)


def test_skab_spans_cover_exactly_the_labelled_rows(skab_dir):
    data = load_skab(skab_dir, train_rows=3)
    rows = data.test[data.test["sensor"] == "Voltage"].reset_index(drop=True)
    flagged = point_labels(rows, data.labels)
    by_device = pd.Series(flagged).groupby(rows["device"]).apply(list).to_dict()
    assert by_device == {"other-1": [False] * 3, "valve1-0": [False, True, True, False, True, True, True],
                         "valve1-10": [True] * 5, "valve2-0": [False, False, True, True]}


def test_skab_can_train_every_run_on_the_anomaly_free_recording(skab_dir):
    data = load_skab(skab_dir, groups=("valve1",), train_on="anomaly_free", train_rows=3)
    assert sorted(data.train["device"].unique()) == ["valve1-0", "valve1-10"]
    assert data.train.groupby("device").size().to_dict() == {"valve1-0": 5 * SKAB_SENSORS, "valve1-10": 5 * SKAB_SENSORS}
    assert data.train["value"].min() == 100
    assert len(data.test) == (7 + 5) * SKAB_SENSORS


def test_skab_refuses_a_folder_without_runs_and_a_missing_folder(tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    with pytest.raises(ValueError, match="no valve1/\\*.csv"):
        load_skab(tmp_path)
    monkeypatch.delenv("BSCORE_SKAB_DIR", raising=False)
    with pytest.raises(ValueError, match="BSCORE_SKAB_DIR"):
        load_skab()


def _smd_folder(root, machine: str, train: np.ndarray, test: np.ndarray, labels: list[int]):
    for part, rows in (("train", train), ("test", test)):
        (root / part).mkdir(parents=True, exist_ok=True)
        (root / part / f"{machine}.txt").write_text(
            "\n".join(",".join(f"{v:g}" for v in row) for row in rows) + "\n")
    (root / "test_label").mkdir(exist_ok=True)
    (root / "test_label" / f"{machine}.txt").write_text("\n".join(str(x) for x in labels) + "\n")


def test_smd_stamps_rows_a_minute_apart_with_the_test_half_after_training(tmp_path, monkeypatch):
    root = tmp_path / "ServerMachineDataset"
    _smd_folder(root, "machine-1-1", np.arange(12.0).reshape(4, 3) / 100, np.arange(15.0).reshape(5, 3) / 10,
                [0, 1, 1, 0, 1])
    _smd_folder(root, "machine-2-1", np.ones((2, 3)), np.zeros((3, 3)), [0, 0, 0])
    monkeypatch.setenv("BSCORE_SMD_DIR", str(root))

    data = load_smd(machines=("machine-1-1", "machine-2-1"))

    assert data.train.groupby("device").size().to_dict() == {"machine-1-1": 12, "machine-2-1": 6}
    assert data.test.groupby("device").size().to_dict() == {"machine-1-1": 15, "machine-2-1": 9}
    assert sorted(data.test["sensor"].unique()) == ["dim01", "dim02", "dim03"]
    one = data.test[(data.test["device"] == "machine-1-1") & (data.test["sensor"] == "dim02")]
    assert list(one["ts"]) == [SMD_ORIGIN + pd.Timedelta(minutes=m) for m in range(4, 9)]
    np.testing.assert_allclose(one["value"], [0.1, 0.4, 0.7, 1.0, 1.3], atol=1e-12)
    first = data.train[(data.train["device"] == "machine-1-1") & (data.train["sensor"] == "dim03")]
    assert list(first["ts"]) == [SMD_ORIGIN + pd.Timedelta(minutes=m) for m in range(4)]
    np.testing.assert_allclose(first["value"], [0.02, 0.05, 0.08, 0.11], atol=1e-12)

    expected = pd.DataFrame({"device": ["machine-1-1", "machine-1-1"],
                             "start": [SMD_ORIGIN + pd.Timedelta(minutes=4), SMD_ORIGIN + pd.Timedelta(minutes=7)],
                             "end": [SMD_ORIGIN + pd.Timedelta(minutes=6), SMD_ORIGIN + pd.Timedelta(minutes=8)]})
    pd.testing.assert_frame_equal(data.labels.reset_index(drop=True), expected, check_dtype=False)
    assert point_labels(one, data.labels).tolist() == [False, True, True, False, True]
    assert data.describe()["test_anomaly_prevalence"] == round(3 / 8, 4)


def test_smd_refuses_labels_that_do_not_match_the_test_rows(tmp_path):
    _smd_folder(tmp_path, "machine-1-1", np.ones((2, 2)), np.ones((3, 2)), [0, 1])
    with pytest.raises(ValueError, match="3 test rows but 2 labels"):
        load_smd(tmp_path, machines=("machine-1-1",))
    with pytest.raises(ValueError, match="no file"):
        load_smd(tmp_path, machines=("machine-9-9",))


def test_a_span_opening_the_series_starts_one_step_before_it():
    ts = pd.Series(pd.to_datetime(["2020-01-01 00:00:00", "2020-01-01 00:00:01", "2020-01-01 00:00:03"]))
    spans = label_spans("d", ts, [1, 1, 1], pd.Timedelta(seconds=1))
    assert spans.to_dict("records") == [{"device": "d", "start": pd.Timestamp("2019-12-31 23:59:59"),
                                         "end": pd.Timestamp("2020-01-01 00:00:03")}]
    with pytest.raises(ValueError, match="0 or 1"):
        label_spans("d", ts, [0, 2, 0], pd.Timedelta(seconds=1))


def test_pointwise_and_point_adjusted_figures_by_hand():
    truth = np.array([0, 1, 1, 1, 0, 0, 1, 1, 0], bool)
    flagged = np.array([1, 0, 1, 0, 0, 0, 0, 0, 1], bool)
    device = np.array(["a"] * 6 + ["b"] * 3)
    figures = pointwise(truth, flagged)
    assert (figures["tp"], figures["fp"], figures["fn"], figures["tn"]) == (1, 2, 4, 2)
    assert figures["precision"] == round(1 / 3, 4) and figures["recall"] == 0.2 and figures["f1"] == 0.25
    assert figures["false_alarm_rate"] == 0.5
    # Device a's run 1..3 has one flag: all of it counts; device b's run 6..7 has none.
    assert point_adjusted(truth, flagged, device).tolist() == [1, 1, 1, 1, 0, 0, 0, 0, 1]
