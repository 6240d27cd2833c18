"""Smoke test of bench/training.py at a tiny fleet: bscore train and its floor fit the same
models on the same windows, and every figure is there."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # two bscore train commands

ROOT = Path(__file__).resolve().parents[2]


def test_training_benchmark_reports_bscore_and_its_floor(tmp_path):
    out = tmp_path / "bench.json"
    subprocess.run([sys.executable, str(ROOT / "bench" / "training.py"), "--sizes", "3", "--sensors", "2",
                    "--hours", "2", "--pairs", "1", "--workers", "1", "--work", str(tmp_path / "work"),
                    "--out", str(out)], check=True, cwd=ROOT, stdout=subprocess.DEVNULL, timeout=900)
    run = json.loads(out.read_text())["sizes"]["3"]
    assert run["windows"] == 3 * 2 * 2 * 720
    [floor] = run["floor"]
    # The floor read every window and fitted a model per sensor and one per device.
    assert (floor["windows"], floor["devices"], floor["models"]) == (run["windows"], 3, 3 * (2 + 1))
    for stage in ("first", "floor", "retrain"):
        [measured] = run[stage]
        assert measured["cpu_s"] > 0 and measured["wall_s"] > 0
    ratios = run["ratios"]
    assert ratios["first_cpu_over_floor"] == pytest.approx(run["first"][0]["cpu_s"] / floor["cpu_s"], abs=0.01)
    assert ratios["retrain_cpu_over_floor"] > 0
    # bscore train stored a current model for every device.
    models = tmp_path / "work" / "home-3" / "blob" / "models"
    assert sorted(p.name for p in models.iterdir()) == ["1", "2", "3"]
    assert all((models / d / "current.json").exists() for d in ("1", "2", "3"))
