"""What ``bscore train`` and ``bscore score`` print is what they stored, and a failed ERROR
check makes them exit non-zero naming it (a subprocess per command, as users run them)."""

import re

import pandas as pd
import pytest

from resources.sql import SqlStore
from scoring.readings import readings_to_event_bodies
from scoring.simulate import simulate_readings
from tests.test_cli import env, run  # noqa: F401  (the env fixture)

pytestmark = pytest.mark.slow  # CLI subprocesses running whole flows

START = pd.Timestamp("2026-03-01T00:00")


def land(tmp_path, readings, name):
    path = tmp_path / f"{name}.jsonl"
    path.write_text("\n".join(readings_to_event_bodies(readings)) + "\n")
    return str(path)


def test_score_prints_the_stored_totals_and_fails_on_an_error_check(env, bscore_home, tmp_path):  # noqa: F811
    env = {**env, "BSCORE_START": "2026-02-28T00:00"}
    clean = simulate_readings(2, 2, START, 1, anomaly_rate=0.0, seed=1)
    burst = simulate_readings(2, 2, START + pd.Timedelta(hours=1), 1, anomaly_rate=0.3, seed=2)
    run(["ingest", land(tmp_path, clean, "clean"), land(tmp_path, burst, "burst")], env)
    trained = run(["train", "--from", "2026-03-01T00", "--to", "2026-03-01T00"], env).stdout
    assert "2 device(s) trained (promoted: 2)" in trained, trained

    result = run(["score", "--from", "2026-03-01T01", "--to", "2026-03-01T01"], env, check=False)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "sensor_predictions.anomaly_rate" in result.stderr
    stored = SqlStore(url=f"sqlite:///{bscore_home / 'bscore.db'}").read_predictions()
    printed = re.search(r"([\d,]+) windows scored of ([\d,]+), ([\d,]+) anomalies", result.stdout)
    assert printed, result.stdout
    scored, windows, anomalies = (int(g.replace(",", "")) for g in printed.groups())
    assert scored == windows == len(stored) == 2 * 2 * 720
    assert anomalies == int(stored["is_anomaly"].sum()) > 0.1 * len(stored)
    # The ingest run's line counts what the hour holds, not the run's other hours.
    assert re.search(r"\b14,400 distinct readings in 1 hour\(s\) \(0 re-delivered", result.stdout), result.stdout

    again = run(["score", "--from", "2026-03-01T01", "--to", "2026-03-01T01"], env, check=False)
    assert "0 hour(s) aggregated, 1 unchanged" in again.stdout, again.stdout


def test_a_file_ingested_twice_is_counted_once_and_its_redelivery_apart(env, bscore_home, tmp_path):  # noqa: F811
    env = {**env, "BSCORE_START": "2026-02-28T00:00"}
    path = land(tmp_path, simulate_readings(1, 1, START, 1, anomaly_rate=0.0, seed=1), "once")
    run(["ingest", path], env)
    run(["ingest", path], env)
    trained = run(["train", "--from", "2026-03-01T00", "--to", "2026-03-01T00"], env).stdout
    assert re.search(r"\b3,600 distinct readings in 1 hour\(s\) \(3,600 re-delivered, 0 re-sent with another "
                     r"value and ignored; 7,200 drained now", trained), trained
