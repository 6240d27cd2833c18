"""The Dagster UI in a real browser: dagster-webserver on an instance the demo filled, read by headless Chromium.

``probe.mjs`` (playwright-core driving Debian's ``/usr/bin/chromium``) reports what the pages
show and saves screenshots under ``test-artifacts/ui/``; this test compares the pages with
what the instance holds.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import urllib.request
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from tests.conftest import ROOT, free_port, wait_for_port

pytestmark = pytest.mark.slow  # the webserver and Chromium

ARTIFACTS = ROOT / "test-artifacts" / "ui"
BIN = ROOT / ".venv" / "bin"
ASSETS = {"raw_readings", "sensor_aggregates", "device_models", "sensor_predictions", "device_verdicts"}
LINEAGE = {
    ("raw_readings", "sensor_aggregates"),
    ("sensor_aggregates", "device_models"),
    ("sensor_aggregates", "sensor_predictions"),
    ("device_models", "sensor_predictions"),
    ("sensor_predictions", "device_verdicts"),
}


def wait_for_http(url: str, process: subprocess.Popen, timeout: float = 90.0) -> None:
    deadline = pd.Timestamp.now() + pd.Timedelta(seconds=timeout)
    while pd.Timestamp.now() < deadline:
        assert process.poll() is None, f"dagster-webserver exited with {process.returncode}"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        subprocess.run(["sleep", "0.5"], check=True)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


@pytest.fixture(scope="module")
def demo_home(tmp_path_factory) -> tuple[Path, dict]:
    """A BSCORE_HOME where ``bscore demo`` materialized every asset (2 devices x 2 sensors, 2 scored hours)."""
    home = tmp_path_factory.mktemp("ui") / "bscore"
    start = pd.Timestamp.now("UTC").tz_localize(None).floor("h") - pd.Timedelta(hours=6)
    env = {k: v for k, v in os.environ.items() if not k.startswith("BSCORE_")}
    env.update(BSCORE_HOME=str(home), BSCORE_START=start.isoformat(), DAGSTER_HOME=str(home / "dagster"))
    subprocess.run([str(BIN / "bscore"), "demo", "--devices", "2", "--sensors", "2", "--train-hours", "1",
                    "--score-hours", "2"], env=env, cwd=ROOT, check=True, capture_output=True, timeout=300)
    return home, env


@pytest.fixture(scope="module")
def webserver(demo_home) -> str:
    home, env = demo_home
    port = free_port()
    log = open(home / "webserver.log", "w")
    process = subprocess.Popen(
        [str(BIN / "dagster-webserver"), "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port, timeout=90, process=process)
        wait_for_http(f"http://127.0.0.1:{port}/server_info", process)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def test_ui_shows_lineage_partitions_and_checks(demo_home, webserver):
    home, _ = demo_home
    with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
        materialized = sorted(instance.get_materialized_partitions(dg.AssetKey("sensor_predictions")))
        latest_checks = {
            name: instance.event_log_storage.get_asset_check_execution_history(
                dg.AssetCheckKey(dg.AssetKey("sensor_predictions"), name), limit=1)[0].status.value
            for name in ("anomaly_rate", "scoring_coverage")
        }
        # Only partitions with anomalies get a plot (the worst few of a run): probe one of those.
        records = instance.fetch_materializations(dg.AssetKey("sensor_predictions"), limit=100).records
        plotted = sorted({r.partition_key for r in records if "plot" in r.asset_materialization.metadata})
    assert len(materialized) == 4
    assert plotted, "the demo's planted anomalies should give at least one partition a plot"
    partition = plotted[0]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    probe = subprocess.run(["node", str(Path(__file__).with_name("probe.mjs")), webserver, str(ARTIFACTS),
                            "sensor_predictions", partition], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert probe.returncode == 0, probe.stderr[-3000:]
    pages = json.loads(probe.stdout)

    assert ASSETS <= set(pages["graph"]["assets"])
    assert {tuple(edge) for edge in pages["graph"]["edges"]} == LINEAGE

    assert "Materialized (4)" in pages["partitions"]["listed"]
    details = pages["partitions"]["partition"]
    assert partition in details and "Materialized" in details
    for label in ("rows_scored", "anomaly_rate", "devices_missing_model", "model_versions"):
        assert label in details
    assert re.search(r"rows_scored\s+1440\b", details)  # 2 devices x 720 windows
    hour, sensor = partition.split("|")
    assert [p["alt"] for p in pages["partitions"]["plotted"]] == [f"sensor {sensor}, {hour}"]
    assert pages["partitions"]["plotted"][0]["width"] > 0

    shown = {"SUCCEEDED": "Succeeded", "FAILED": "Failed"}
    for name, status in latest_checks.items():
        assert re.search(rf"{name}\n{shown[status]}", pages["checks"]), (name, status)
    assert {p.name for p in ARTIFACTS.glob("*.png")} >= {"asset-graph.png", "partitions.png", "partition-plot.png",
                                                         "checks.png"}
