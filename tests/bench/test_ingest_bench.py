"""Smoke test of bench/ingest.py on small files: each format lands every reading it wrote."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # six bscore commands

ROOT = Path(__file__).resolve().parents[2]


def test_ingest_benchmark_reports_each_format():
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "ingest.py"), "--megabytes", "0.5"],
                         check=True, cwd=ROOT, capture_output=True, text=True, timeout=600).stdout
    results = [json.loads(line) for line in out.splitlines()]
    assert [r["format"] for r in results] == ["long", "wide", "jsonl"]
    for r in results:
        assert r["readings"] > 1000 and 0 < r["fixed_cpu_s"] and 0 < r["cpu_s"]
        assert r["readings_per_wall_s"] == pytest.approx(r["readings"] / r["wall_s"], rel=0.01)
