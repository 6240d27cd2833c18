"""Smoke test of bench/plain_hour.py at a tiny fleet: both pipelines ran, alternating, and the
plain script's predictions are bscore's, window for window."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # bscore train, two bscore score runs and the plain script

ROOT = Path(__file__).resolve().parents[2]


def test_plain_hour_benchmark_matches_bscore_and_reports_cpu(tmp_path):
    out = tmp_path / "bench.json"
    subprocess.run([sys.executable, str(ROOT / "bench" / "plain_hour.py"), "--devices", "2", "--sensors", "2",
                    "--pairs", "1", "--work", str(tmp_path / "work"), "--out", str(out)], check=True, cwd=ROOT,
                   stdout=subprocess.DEVNULL, timeout=900)
    report = json.loads(out.read_text())
    assert report["readings_per_hour"] == 2 * 2 * 3600
    [pair] = report["pairs"]
    for which in ("bscore", "plain"):
        assert pair[which]["seconds"] > 0 and pair[which]["cpu_seconds"] > 0 and pair[which]["peak_rss_mb"] > 50
    assert pair["cpu_ratio"] == round(pair["bscore"]["cpu_seconds"] / pair["plain"]["cpu_seconds"], 2)

    comparison = report["comparison"]
    assert comparison["windows_bscore"] == comparison["windows_plain"] == comparison["windows_in_both"] == 2 * 2 * 720
    assert comparison["flags_differ"] == 0 and comparison["model_versions_differ"] == 0
    assert comparison["max_abs_value_difference"] < 1e-9 and comparison["max_abs_score_difference"] < 1e-9
    assert report["summary"]["same_windows"] and report["summary"]["same_flags"]

    # A re-score with nothing changed writes no raw part, prediction or verdict again.
    written = report["rescore"]["written"]
    assert written["blob"] == {"added": 0, "removed": 0, "rewritten": 0, "bytes": 0}


def test_plain_hour_refuses_a_fleet_of_no_devices():
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "plain_hour.py"), "--devices", "0"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "--devices" in done.stderr
