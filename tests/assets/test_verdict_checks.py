"""The ``device_anomaly_rate`` check from hours' verdict summaries: the worst hour decides."""

import dagster as dg
import pandas as pd

from bscore_assets.verdicts.checks import device_anomaly_rate_result

H0 = pd.Timestamp("2026-03-01T00:00")


def summary(windows: int, anomalous: int) -> dict:
    return {"device_windows": windows, "anomalous_device_windows": anomalous,
            "anomaly_rate": anomalous / windows if windows else 0.0,
            "top_devices": {"d1": anomalous} if anomalous else {}, "top_sensors": {"s1": anomalous} if anomalous else {}}


def test_the_worst_hour_sets_the_severity_and_its_top_devices_are_shown():
    hours = {H0: summary(100, 5), H0 + pd.Timedelta(hours=1): summary(100, 20), H0 + pd.Timedelta(hours=2): summary(0, 0)}
    warned = device_anomaly_rate_result(hours, warn=0.10, error=0.40)
    assert not warned.passed and warned.severity == dg.AssetCheckSeverity.WARN
    assert warned.metadata["max_device_anomaly_rate"].value == 0.2
    assert warned.metadata["hours_over_warn"].value == 1
    assert warned.metadata["over_warn"].value == {"2026-03-01-01:00": {"top_devices": {"d1": 20},
                                                                        "top_sensors": {"s1": 20}}}
    failed = device_anomaly_rate_result(hours, warn=0.05, error=0.15)
    assert not failed.passed and failed.severity == dg.AssetCheckSeverity.ERROR
    assert failed.metadata["hours_over_error"].value == 1
    passed = device_anomaly_rate_result({H0: summary(100, 5)}, warn=0.10, error=0.40)
    assert passed.passed and passed.metadata["hours_over_warn"].value == 0
    assert device_anomaly_rate_result({}, warn=0.10, error=0.40).passed


def test_an_hour_s_verdicts_carry_their_figures_against_the_user_s_labels():
    import pyarrow as pa

    from bscore_assets.verdicts.assets import labelled_figures
    from scoring.verdicts import device_verdicts

    ts = pd.date_range("2026-01-01T00:00:05", periods=10, freq="5s")
    # Device d: sensor a flags windows 3-5; the label covers windows 4-6 (start < ts <= end).
    flags = [False] * 3 + [True] * 3 + [False] * 4
    predictions = pa.table({"ts": pa.array(list(ts) * 2), "device": pa.array(["d"] * 20).dictionary_encode(),
                            "sensor": pa.array(["a"] * 10 + ["b"] * 10).dictionary_encode(),
                            "is_anomaly": pa.array(flags + [False] * 10)})
    labels = pd.DataFrame({"device": ["d"], "start": [ts[3] - pd.Timedelta(seconds=5) + pd.Timedelta(seconds=5)],
                           "end": [ts[6]], "sensor": [None], "kind": [""]})
    figures = labelled_figures(predictions.to_pandas(), device_verdicts(predictions).to_pandas(), labels)
    # Device windows 3, 4, 5 flagged; 4, 5, 6 labelled: tp 2, fp 1, fn 1, tn 6.
    assert figures["labels_precision"] == round(2 / 3, 4) and figures["labels_recall"] == round(2 / 3, 4)
    assert figures["labels_false_alarm_rate"] == round(1 / 7, 4)
    assert figures["labels_all_f1"] == round(2 * 0.3 / 1.3, 4)
    assert labelled_figures(predictions.to_pandas(), device_verdicts(predictions).to_pandas(), None) == {}
