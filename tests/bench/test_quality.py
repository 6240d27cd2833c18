"""bench/quality.py end to end on a tiny SMD-format folder, with today's reference kind."""

import json

import numpy as np
import pandas as pd

from bench.datasets import load_smd, point_labels
from bench.quality import _sorted_for_scoring, main, training_sensor_shapes
from scoring.engine import score_shard
from scoring.training import train_fleet


def _write(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(",".join(f"{v:.6f}" for v in row) for row in rows) + "\n")


def test_the_harness_reports_the_engines_own_verdicts_against_the_labels(tmp_path):
    rng = np.random.default_rng(7)
    root = tmp_path / "ServerMachineDataset"
    train = np.column_stack([rng.normal(0.5, 0.05, 60), np.full(60, 0.2)])  # dim02 constant in training
    test = np.column_stack([rng.normal(0.5, 0.05, 40), np.full(40, 0.2)])
    labels = [0] * 30 + [1] * 10
    _write(root / "train" / "machine-1-1.txt", train)
    _write(root / "test" / "machine-1-1.txt", test)
    (root / "test_label" / "machine-1-1.txt").parent.mkdir(parents=True)
    (root / "test_label" / "machine-1-1.txt").write_text("\n".join(map(str, labels)) + "\n")
    out = tmp_path / "report.json"

    main(["--datasets", "smd", "--smd-dir", str(root), "--smd-machines", "machine-1-1", "--kinds", "svm,nonesuch",
          "--out", str(out)])

    report = json.loads(out.read_text())["datasets"]["smd"]
    assert report["details"]["test_device_windows"] == 40 and report["details"]["test_anomalous_device_windows"] == 10
    assert report["degenerate_training_sensors"][0]["sensor"] == "dim02"
    assert report["degenerate_training_sensors"][0]["shape"] == "constant"
    svm = report["kinds"]["svm"]
    assert svm["models"] == 2
    assert svm["flag_everything"]["f1"] == 0.4

    # The same verdicts computed here from the library: a device window is flagged when a sensor is.
    data = load_smd(root, machines=("machine-1-1",))
    bundles, _ = train_fleet(data.train, ["machine-1-1"], kind="svm")
    scored = score_shard(_sorted_for_scoring(data.test), bundles).predictions
    flagged = scored.groupby("ts")["is_anomaly"].any()
    truth = point_labels(flagged.reset_index().assign(device="machine-1-1"), data.labels)
    expected_tp = int((flagged.to_numpy() & truth).sum())
    assert svm["pointwise"]["tp"] == expected_tp and svm["pointwise"]["fn"] == 10 - expected_tp
    assert svm["pointwise"]["fp"] == int((flagged.to_numpy() & ~truth).sum())
    assert svm["device_windows_flagged_share"] == round(float(flagged.mean()), 4)
    assert svm["per_device"]["machine-1-1"]["tp"] == expected_tp
    # A constant sensor's score is one number: the calibrated threshold lies below it, so it flags
    # none of its windows (at libsvm's own boundary, all or none, by a rounding accident).
    constant = next(s for s in svm["per_sensor"] if s["sensor"] == "dim02")
    assert constant["train_flag_rate"] == constant["clean_test_flag_rate"] == 0.0
    assert svm["train"]["windows"] == 120 and svm["score"]["windows"] == 80 and svm["score"]["windows_per_second"] > 0
    assert "nonesuch" in report["kinds"]["nonesuch"]["error"]

    # Both device verdicts: the vote is "any sensor flagged"; the multivariate one is the device
    # model's own flags (dim02, constant in training, dropped from it).
    vote, multivariate = svm["device_verdicts"]["vote"], svm["device_verdicts"]["multivariate"]
    assert vote["pointwise"] == svm["pointwise"]
    model = bundles["machine-1-1"].device_model
    assert model.sensors == ("dim01",) and model.dropped == ("dim02",)
    values = data.test.pivot(index="ts", columns="sensor", values="value")[list(model.sensors)].to_numpy()
    model_flags = model.score(values)[1]
    assert multivariate["device_windows_judged_by_device_model"] == 40
    assert multivariate["pointwise"]["tp"] == int((model_flags & truth).sum())
    assert multivariate["pointwise"]["fp"] == int((model_flags & ~truth).sum())


def test_training_sensor_shapes_name_each_kind_of_degenerate_sensor():
    n = 100
    values = {
        "flat": np.full(n, 3.0),
        "stuck": np.r_[np.full(97, 1.0), [1.5, 2.0, 2.5]],
        "steps": np.tile([0.0, 0.5, 1.0, 1.5], n // 4),
        "spiky": np.r_[np.zeros(60), np.linspace(0.01, 1.0, 40)],
        "smooth": np.linspace(0.0, 1.0, n),
    }
    train = pd.concat([pd.DataFrame({"ts": pd.date_range("2026-01-01", periods=n, freq="min"), "device": "d",
                                     "sensor": name, "value": v}) for name, v in values.items()])
    shapes = {s["sensor"]: s["shape"] for s in training_sensor_shapes(train)}
    assert shapes == {"flat": "constant", "stuck": "near_constant", "steps": "quantized", "spiky": "zero_mad"}
