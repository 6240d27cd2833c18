"""Dagster's own command line on bscore's code location, as an engineer who knows Dagster runs
it: a fresh instance, `dagster asset materialize` in subprocesses, `bscore fleet register` for
the dynamic partitions, and no warnings from the project's definitions on the way. (The
``bscore`` commands run in this process, as tests/test_cli.py runs them.)"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_cli import run as bscore

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
IN_PROCESS = '{"execution": {"config": {"in_process": {}}}}'  # one process per run: faster here
HOUR_KEY = "2026-03-01-00:00"


@pytest.fixture
def env(bscore_home):
    dagster_home = bscore_home / "dagster"
    dagster_home.mkdir(parents=True)
    (dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return {**os.environ, "BSCORE_HOME": str(bscore_home), "DAGSTER_HOME": str(dagster_home),
            "BSCORE_START": "2026-03-01T00:00"}


def run(command: list[str], env: dict, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def materialize(selection: str, partition: str, env: dict, check: bool = True) -> subprocess.CompletedProcess:
    return run([str(BIN / "dagster"), "asset", "materialize", "-f", "definitions.py", "--select", selection,
                "--partition", partition, "--config-json", IN_PROCESS], env, check)


@pytest.mark.slow  # the real dagster CLI in subprocesses on a fresh instance (~60 s)
def test_fleet_register_lets_dagster_materialize_dynamic_partitions_on_a_fresh_instance(env):
    bscore(["simulate", "--devices", "2", "--sensors", "2", "--start", "2026-03-01T00", "--hours", "1",
         "--profile", "uniform"], env)
    aggregated = materialize("raw_readings,sensor_aggregates", HOUR_KEY, env)
    assert "RUN_SUCCESS" in aggregated.stderr + aggregated.stdout

    unknown = materialize("device_models", "1", env, check=False)  # what `bscore fleet register` is for
    assert unknown.returncode != 0 and "DagsterUnknownPartitionError" in unknown.stderr

    registered = bscore(["fleet", "register"], env).stdout
    assert "new devices: 1, 2" in registered and "new sensors: 1, 2" in registered
    assert "2 device(s) and 2 sensor(s) registered" in registered
    assert "2 device(s) and 2 sensor(s) registered" in bscore(["fleet", "register"], env).stdout  # idempotent

    trained = materialize("device_models", "1", env)
    scored = materialize("sensor_predictions", f"{HOUR_KEY}|1", env)
    for result in (aggregated, trained, scored):
        assert "RUN_SUCCESS" in result.stderr + result.stdout
        assert "BetaWarning" not in result.stderr  # the project's definitions use beta APIs knowingly
