"""Smoke test of bench/fleet_hour.py at a tiny fleet: every figure is there and plausible."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # a benchmark run under GNU time

ROOT = Path(__file__).resolve().parents[2]


def test_fleet_hour_benchmark_reports_every_figure(tmp_path):
    out = tmp_path / "bench.json"
    subprocess.run([sys.executable, str(ROOT / "bench" / "fleet_hour.py"), "--sizes", "2", "--sensors", "2",
                    "--work", str(tmp_path / "work"), "--out", str(out)], check=True, cwd=ROOT,
                   stdout=subprocess.DEVNULL, timeout=600)
    report = json.loads(out.read_text())
    run = report["sizes"]["2"]
    assert run["readings_per_hour"] == 2 * 2 * 3600
    assert run["ingest"]["readings"] == 2 * 2 * 3600 and run["ingest"]["rejected"] == 0
    assert run["floor"]["readings"] == 2 * 2 * 3600 and run["floor"]["windows"] == 2 * 2 * 720
    for stage in ("train", "end_to_end", "rescore", "floor"):
        assert run[stage]["seconds"] > 0 and run[stage]["cpu_seconds"] > 0
        assert 50 < run[stage]["peak_rss_mb"] <= run[stage]["peak_tree_rss_mb"] < 8000
    summary = report["summary"]
    assert summary["end_to_end_over_floor"] > 0 and summary["end_to_end_cpu_over_floor"] > 0 and summary["rescore_over_first"] > 0
    assert summary["rss_largest_over_smallest_fleet"] == 1.0  # one size: compared with itself
    assert summary["ingest_readings_per_second"] > 0 and summary["floor_ingest_readings_per_second"] > 0
