"""The ``bscore`` command line end to end, as users run it.

The commands run in this process through click's runner, with the environment a user's shell
would give them: a new interpreter per command spent seconds importing Dagster and pandas, which
is not what these tests check. ``bscore`` as a process of its own, its exit status and stderr,
is run by ``test_bad_input_gives_a_clear_error`` here, tests/reliability (test_crash, test_secrets)
and tests/automation/test_daemon.py.
"""

import os
import re
import subprocess
import sys
import traceback
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from click.testing import CliRunner

pytestmark = pytest.mark.slow  # CLI commands running whole flows

ROOT = Path(__file__).resolve().parents[1]
BSCORE = [sys.executable, "-m", "bscore_assets.cli"]


def run(args, env, check=True) -> subprocess.CompletedProcess:
    """``bscore <args>`` in this process with ``env`` as its environment: its exit status, stdout and stderr."""
    from bscore_assets.cli import main

    result = CliRunner().invoke(main, args, env=env)
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += "".join(traceback.format_exception(result.exception))  # what the interpreter would print
    done = subprocess.CompletedProcess(["bscore", *args], result.exit_code, result.stdout, stderr)
    if check and done.returncode != 0:
        raise AssertionError(f"bscore {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done


def run_process(args, env) -> subprocess.CompletedProcess:
    """``bscore <args>`` as a process of its own, as a shell starts it."""
    return subprocess.run(BSCORE + args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture
def env(bscore_home):
    return {**os.environ, "BSCORE_HOME": str(bscore_home)}


def test_demo_prints_per_sensor_table_and_runs_are_in_the_instance(env, bscore_home):
    # The uniform simulator plants an anomaly in every sensor of so small a fleet; the realistic
    # fleet is measured by bench/quality.py (docs/quality-benchmark.md).
    out = run(["demo", "--devices", "2", "--sensors", "3", "--train-hours", "1", "--score-hours", "1",
               "--profile", "uniform"], env).stdout
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:3] == ["sensor", "windows_scored", "anomalies_flagged"])
    assert lines[header].split()[3:] == ["planted", "precision", "recall", "false_alarm_rate"]
    table = [line.split() for line in lines[header + 1 : header + 4]]
    assert [row[0] for row in table] == ["1", "2", "3"]
    assert all(int(row[1]) == 2 * 720 for row in table)
    recalls = [float(row[5]) for row in table if row[5] != "NaN"]
    assert recalls and min(recalls) >= 0.9
    assert all(0 <= float(row[6]) <= 0.02 for row in table)
    assert "make ui" in out
    instance = dg.DagsterInstance.from_config(str(bscore_home / "dagster"))
    jobs = {run.job_name for run in instance.get_runs()}
    assert {"ingest_job", "training_job", "scoring_job", "verdicts_job"} <= jobs
    assert all(run.is_success for run in instance.get_runs())


def test_reference_data_ingest_train_score_export(env, bscore_home, reference_dir, tmp_path):
    env = {**env, "BSCORE_START": "2018-08-28T00:00"}
    run(["ingest", str(reference_dir / "sensor_data.csv")], env)
    run(["train", "--from", "2018-08-28T23", "--to", "2018-08-29T00"], env)
    out = run(["score", "--from", "2018-08-29T01", "--to", "2018-08-29T03", "--sensor", "1", "--sensor", "2"], env).stdout
    assert "windows scored" in out
    run(["predictions", "export", "--out", str(tmp_path / "out")], env)
    files = sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.csv"))
    assert files == [f"{d}/preds_{d}_{s}.csv" for d in "123" for s in "12"]
    exported = pd.read_csv(tmp_path / "out" / "2" / "preds_2_1.csv")
    assert list(exported.columns) == ["TS", "Device", "Sensor", "Val", "Prediction", "Score"]
    assert ((exported["Score"] <= 0) == (exported["Prediction"] == 1)).all()
    reference = pd.read_csv(reference_dir / "sensor_data.csv", parse_dates=["TS"])
    expected = reference[(reference.Device == 2) & (reference.Sensor == 1)
                         & (reference.TS > "2018-08-29 01:00") & (reference.TS <= "2018-08-29 04:00")]
    assert len(exported) == len(expected) > 0
    assert set(exported["Prediction"]) <= {0, 1}


def test_bad_input_gives_a_clear_error(env, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("when,who,what\n1,2,3\n")
    result = run_process(["ingest", str(bad)], env)
    assert result.returncode == 2 and "bad.csv" in result.stderr and "header" in result.stderr
    result = run_process(["score", "--from", "2017-01-01T00", "--to", "2017-01-01T01"], env)
    assert result.returncode == 2 and "BSCORE_START" in result.stderr
    result = run_process(["score", "--from", "yesterday", "--to", "2026-01-01T01"], env)
    assert result.returncode == 2 and "--from 'yesterday'" in result.stderr


def test_workspace_loads_with_five_assets_and_their_checks(env):
    result = subprocess.run([str(Path(sys.executable).parent / "dagster"), "definitions", "validate", "-w", "workspace.yaml"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    from definitions import defs

    graph = defs().resolve_asset_graph()
    assert {key.to_user_string() for key in graph.get_all_asset_keys()} == {
        "raw_readings", "sensor_aggregates", "device_models", "sensor_predictions", "device_verdicts"}
    checks = {(key.asset_key.to_user_string(), key.name) for key in graph.asset_check_keys}
    assert {("sensor_aggregates", "readings_reconciled"), ("device_models", "every_sensor_has_model"),
            ("device_models", "challenger_gate"),
            ("sensor_predictions", "anomaly_rate"), ("sensor_predictions", "scoring_coverage"),
            ("device_verdicts", "device_anomaly_rate")} <= checks


def write_testbed_export(path: Path, start: pd.Timestamp, hours: int) -> None:
    """A wide, ;-separated export as a testbed's logger writes it: local times with their
    offset, decimal commas, one column per sensor named for people."""
    from scoring.simulate import simulate_readings

    readings = simulate_readings(1, 3, start, hours, anomaly_rate=0.0, seed=3)
    wide = readings.pivot(index="ts", columns="sensor", values="value")
    wide.columns = ["Flow Rate (l/min)", "Pressure (bar)", "Motor Temp °C"]
    stamps = wide.index.tz_localize("UTC").tz_convert("Europe/Berlin").strftime("%Y-%m-%d %H:%M:%S%z")
    values = wide.round(3).astype(str).apply(lambda column: column.str.replace(".", ",", regex=False))
    values.insert(0, "Timestamp", stamps)
    values.to_csv(path, sep=";", index=False)


def test_wide_testbed_export_through_ingest_train_score_export(env, tmp_path):
    """The closing walk-through of issue 11, as a new user runs it."""
    testbed = tmp_path / "testbed.csv"
    write_testbed_export(testbed, pd.Timestamp("2026-03-01T00:00"), 2)
    out = run(["ingest", str(testbed), "--device", "Testbed 1", "--decimal-comma"], env).stdout
    assert "wide CSV, delimiter ';'" in out and "21,600 events landed" in out
    assert re.search(r"Flow Rate \(l/min\) +-> +Flow_Rate_l_min", out) and re.search(r"Testbed 1 +-> +Testbed_1", out)
    run(["train", "--from", "2026-03-01T00", "--to", "2026-03-01T00"], env)
    out = run(["score", "--from", "2026-03-01T01", "--to", "2026-03-01T01"], env).stdout
    assert "windows scored" in out
    run(["predictions", "export", "--out", str(tmp_path / "out")], env)
    files = sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.csv"))
    assert files == [f"Testbed_1/preds_Testbed_1_{s}.csv" for s in ("Flow_Rate_l_min", "Motor_Temp_C", "Pressure_bar")]
    flow = pd.read_csv(tmp_path / "out" / files[0])
    assert len(flow) == 720 and list(flow.columns) == ["TS", "Device", "Sensor", "Val", "Prediction", "Score"]
    assert flow["TS"].iloc[-1] == "2026-03-01 02:00:00.000"  # UTC, from 03:00+01:00
