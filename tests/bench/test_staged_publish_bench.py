"""Smoke test of bench/staged_publish.py on a tiny hour: both ways publish every row on both
dialects and the report says how long each took."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_staged_publish_benchmark_publishes_the_hour_both_ways_on_both_dialects():
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "staged_publish.py"), "--devices", "5", "--sensors",
                          "2", "--windows", "12", "--shard", "2", "--rounds", "2"],
                         check=True, cwd=ROOT, capture_output=True, text=True, timeout=300).stdout
    report = json.loads(out)
    assert set(report) == {"postgresql", "sqlite"}
    for dialect in report.values():
        for way in ("through_run", "staged"):
            assert dialect[way]["rows"] == 5 * 2 * 12
            assert len(dialect[way]["publish_wall_seconds_each"]) == 2
            assert dialect[way]["publish_rows_per_second"] > 0
        assert dialect["staged"]["jobs_wall_seconds"] > 0 == dialect["through_run"]["jobs_wall_seconds"]
