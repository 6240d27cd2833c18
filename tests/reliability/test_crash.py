"""Crashes and concurrency: a run killed with SIGKILL mid-way, then re-run, leaves exactly the
rows of one clean run; two runs of the same partitions at once do not corrupt each other."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from bscore_assets.storage import read_prediction_partition
from scoring.engine import score_shard
from scoring.model_store import load_current_bundles
from scoring.shard_task import CONTEXT
from scoring.simulate import simulate_readings
from tests.assets.conftest import SCORE_START, TRAIN_START, build_platform, land

pytestmark = pytest.mark.slow  # a fleet scored in subprocesses, killed and run again

ROOT = Path(__file__).resolve().parents[2]
HOUR = pd.Timedelta(hours=1)
DEVICES, SENSORS, HOURS = 40, 5, 2
SCORE_FROM, SCORE_TO = SCORE_START, SCORE_START + (HOURS - 1) * HOUR


@pytest.fixture(scope="module")
def trained_fleet_home(tmp_path_factory):
    """A home with a fleet big enough that scoring takes seconds: models trained, nothing scored
    yet. Built once for the module; each test scores a copy of it."""
    home = tmp_path_factory.mktemp("crash-fleet") / "bscore"
    with pytest.MonkeyPatch.context() as env:  # the local defaults, in a home of its own
        for variable in [v for v in os.environ if v.startswith("BSCORE_")]:
            env.delenv(variable)
        env.setenv("BSCORE_HOME", str(home))
        platform = build_platform()
        try:
            land(platform, simulate_readings(DEVICES, SENSORS, TRAIN_START, 1, 0.0, interval_seconds=5, seed=1))
            land(platform, simulate_readings(DEVICES, SENSORS, SCORE_START, HOURS, 0.02, interval_seconds=5, seed=2))
            platform.train(None, TRAIN_START, TRAIN_START)
        finally:
            platform.instance.dispose()
    return home


@pytest.fixture
def fleet(trained_fleet_home, bscore_home):
    shutil.copytree(trained_fleet_home, bscore_home)
    return build_platform()


def score_command(platform):
    env = {**os.environ, "BSCORE_HOME": str(platform.settings.home)}
    args = [sys.executable, "-m", "bscore_assets.cli", "score", "--from", f"{SCORE_FROM:%Y-%m-%dT%H}",
            "--to", f"{SCORE_TO:%Y-%m-%dT%H}"]
    return args, env


_expected_by_inputs: dict[tuple, pd.DataFrame] = {}


def expected_predictions(platform) -> pd.DataFrame:
    """What one clean run must store, computed straight from the library (with the minutes of
    context a shard reads before its first hour). The same windows and model versions give the
    same predictions, so each such pair is scored once."""
    windows = platform.resources["sql"].read_sensor_values(SCORE_FROM - CONTEXT, SCORE_TO + HOUR)
    bundles = load_current_bundles(platform.resources["blob"], sorted(windows["device"].unique()))
    inputs = (int(pd.util.hash_pandas_object(windows, index=False).sum()),
              tuple(sorted((device, bundle.version) for device, bundle in bundles.items())))
    if inputs not in _expected_by_inputs:
        _expected_by_inputs[inputs] = sort(score_shard(windows, bundles, context_until=SCORE_FROM).predictions)
    return _expected_by_inputs[inputs].copy()


def sort(frame):
    columns = ["ts", "device", "sensor", "value", "score", "is_anomaly", "model_version"]
    frame = frame[columns].astype({"device": str, "sensor": str, "model_version": str, "is_anomaly": bool})
    return frame.sort_values(["device", "sensor", "ts"]).reset_index(drop=True)


def assert_whole_or_absent(platform):
    """Every hour's predictions in SQL and every blob partition (the parts its manifest names):
    all rows or none. "All" is every window of a device with a current model: the training
    gate may have kept some devices' first models back (they are reported, not scored)."""
    sql, blob = platform.resources["sql"], platform.resources["blob"]
    expected = expected_predictions(platform)
    hours = expected["ts"].dt.ceil("h") - HOUR
    for hour in pd.date_range(SCORE_FROM, SCORE_TO, freq="h"):
        full_hour = expected[hours == hour]
        rows = sql.read_predictions(hour, hour + HOUR)
        assert len(rows) in (0, len(full_hour)), f"{hour}: {len(rows)} rows"
        assert not rows.duplicated(["device", "sensor", "ts"]).any()
        for sensor in map(str, range(1, SENSORS + 1)):
            rows = read_prediction_partition(blob, hour, sensor)
            if rows is not None:
                assert len(rows) == int((full_hour["sensor"] == sensor).sum())
                assert not rows.duplicated(["device", "ts"]).any()
    assert not [p for p in Path(platform.settings.home, "blob").rglob("*.parquet") if p.name.startswith(".")]


def test_sigkill_mid_run_then_rerun_gives_one_clean_run(fleet):
    args, env = score_command(fleet)
    killed = 0
    for delay in (3.0, 5.0, 7.0, 9.0):
        process = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            killed += 1
        process.wait()
        assert_whole_or_absent(fleet)
    assert killed >= 2, "the run finished before it could be killed: make the fleet bigger"
    subprocess.run(args, cwd=ROOT, env=env, check=True, capture_output=True, timeout=300)
    stored = sort(fleet.resources["sql"].read_predictions(SCORE_FROM, SCORE_TO + HOUR))
    pd.testing.assert_frame_equal(stored, expected_predictions(fleet), check_dtype=False)
    windows = fleet.resources["sql"].read_sensor_values(SCORE_FROM, SCORE_TO + HOUR)
    assert len(windows) == DEVICES * SENSORS * 720 * HOURS
    assert not windows.duplicated(["device", "sensor", "ts"]).any()


def test_two_runs_of_the_same_partitions_at_once(fleet):
    args, env = score_command(fleet)
    runs = [subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    outcomes = [(p.wait(timeout=300), p.stderr.read()) for p in runs]
    assert [code for code, _ in outcomes] == [0, 0], outcomes
    assert_whole_or_absent(fleet)
    stored = sort(fleet.resources["sql"].read_predictions(SCORE_FROM, SCORE_TO + HOUR))
    pd.testing.assert_frame_equal(stored, expected_predictions(fleet), check_dtype=False)
