"""bench/device_model_bench.py and bench/device_model_choice.py on tiny inputs: every figure is
there, and the choice bench's PCA figures are the device model's own flags."""

import numpy as np
import pandas as pd

from bench import device_model_bench, device_model_choice
from bench.datasets import point_labels
from bench.quality import pointwise
from tests.bench.test_quality import _write


def test_device_model_bench_times_fitting_and_both_verdicts():
    report = device_model_bench.main(["--devices", "3", "--sensors", "4", "--windows", "60", "--repeat", "2"])
    assert report["predictions"] == 3 * 4 * 60
    assert set(report["fit_ms_per_device"]) == {"fit_device_on_matrix", "fit_device_model_from_rows"}
    assert all(report["verdicts"][m]["wall_seconds"] > 0 for m in ("vote", "multivariate"))


def test_device_model_choice_compares_the_three_models_on_the_same_windows(tmp_path, monkeypatch):
    rng = np.random.default_rng(3)
    root = tmp_path / "ServerMachineDataset"
    factor = rng.normal(size=(300, 1))
    train = np.column_stack([factor, 2 * factor, -factor]) + 0.1 * rng.normal(size=(300, 3))
    test = np.column_stack([rng.normal(size=(80, 1))] * 3) * [1, 2, -1] + 0.1 * rng.normal(size=(80, 3))
    test[60:, 1] += 3  # the second metric leaves the others
    _write(root / "train" / "machine-1-1.txt", train)
    _write(root / "test" / "machine-1-1.txt", test)
    (root / "test_label" / "machine-1-1.txt").parent.mkdir(parents=True)
    (root / "test_label" / "machine-1-1.txt").write_text("\n".join(["0"] * 60 + ["1"] * 20) + "\n")
    monkeypatch.setenv("BSCORE_SMD_DIR", str(root))

    report = device_model_choice.main(["--datasets", "smd", "--smd-machines", "machine-1-1",
                                       "--repeat", "2"])["datasets"]["smd"]
    assert set(report["variants"]) == {"pca_spe_t2", "pca_spe", "isolation_forest"}
    data = device_model_choice.LOADERS["smd"](machines=("machine-1-1",))
    ((sensors, x, ts, y),) = device_model_choice.device_data(data).values()
    flags = device_model_choice.PcaSpeT2().fit(x, sensors, 0.005).flags(y)
    truth = point_labels(pd.DataFrame({"device": "machine-1-1", "ts": ts}), data.labels)
    expected = pointwise(truth, flags)
    assert {k: report["variants"]["pca_spe_t2"][k] for k in expected} == expected
    assert report["variants"]["pca_spe_t2"]["recall"] == 1.0  # the broken correlation is found
