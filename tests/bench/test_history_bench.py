"""Smoke test of bench/history.py on a tiny history: both layouts on both dialects load and time
their hours, with the rows the tables define (a column added to them must reach the bench)."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_history_benchmark_times_both_layouts_on_both_dialects():
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "history.py"), "--devices", "3", "--sensors", "2",
                          "--windows", "12", "--hours", "3", "--rounds", "1"],
                         check=True, cwd=ROOT, capture_output=True, text=True, timeout=300).stdout
    report = json.loads(out)
    assert set(report) == {"sqlite/old", "sqlite/current", "postgresql/old", "postgresql/current"}
    for run in report.values():
        assert run["hour_rows"] == 3 * 2 * 12 * 2 + 3 * 12  # windows and predictions per sensor, verdicts per device
        assert run["history_rows"] == 2 * run["hour_rows"]
        assert run["wall_ratio"] > 0 and run["cpu_ratio"] > 0
