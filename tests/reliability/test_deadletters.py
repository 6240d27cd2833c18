"""Dead letters can be listed, fixed and re-submitted, and a replayed one is sent once
(issue 11, case 7)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

from bscore_assets.ingestion.deadletters import REPLAYED, list_dead_letters, replay_dead_letters
from scoring.input_files import IdMapping
from tests.assets.conftest import TRAIN_START

ROOT = Path(__file__).resolve().parents[2]


def event(second, sensor="1", value=1.0):
    return json.dumps({"ts": (TRAIN_START + pd.Timedelta(seconds=second)).isoformat(), "device": "1",
                       "sensor": sensor, "value": value})


def bscore(args, home):
    result = subprocess.run([sys.executable, "-m", "bscore_assets.cli", *args], cwd=ROOT, capture_output=True,
                            text=True, timeout=300, env={**os.environ, "BSCORE_HOME": str(home)})
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_dead_letters_are_listed_fixed_replayed_once_and_aggregated(platform, bscore_home):
    events, blob = platform.resources["events"], platform.resources["blob"]
    spaced = [event(i + 1, sensor="Flow Rate") for i in range(10)]
    events.publish([event(100), *spaced, event(200, value="hot")])
    platform.ingest_hours(TRAIN_START, TRAIN_START)

    listed = list_dead_letters(blob)
    assert listed.groupby("reason")["count"].sum().to_dict() == {"bad sensor": 10, "bad value": 1}
    out = bscore(["deadletter", "list"], bscore_home)
    assert "10  bad sensor" in out and "1  bad value" in out and "deadletter/" in out and "11 dead letter(s)" in out

    # Replayed as they are, the names are refused again: nothing is sent, nothing moves.
    unfixed = replay_dead_letters(blob, events, "bad sensor")
    assert (unfixed.sent, unfixed.still_refused) == (0, {"bad sensor": 10})
    out = bscore(["deadletter", "replay", "--reason", "bad sensor", "--fix-ids"], bscore_home)
    assert "10 of 10 dead letter(s) re-published" in out and "Flow Rate  ->  Flow_Rate" in out
    again = replay_dead_letters(blob, events, "bad sensor", IdMapping())
    assert (again.selected, again.sent) == (0, 0)  # a replayed dead letter is not sent twice
    assert list_dead_letters(blob).groupby("reason")["count"].sum().to_dict() == {"bad value": 1}
    assert len(blob.list(REPLAYED)) == 1

    platform.ingest_hours(TRAIN_START, TRAIN_START)
    windows = platform.resources["sql"].read_sensor_values(TRAIN_START, TRAIN_START + pd.Timedelta(hours=1))
    assert windows.groupby("sensor")["readings"].sum().to_dict() == {"1": 1, "Flow_Rate": 10}


def test_dead_letters_exported_for_hand_fixing_are_taken_out(platform, bscore_home, tmp_path):
    events, blob = platform.resources["events"], platform.resources["blob"]
    events.publish([event(1), event(2, value="hot")])
    platform.ingest_hours(TRAIN_START, TRAIN_START)
    out = tmp_path / "fix.jsonl"
    assert "1 dead letter(s) written" in bscore(["deadletter", "export", "--out", str(out)], bscore_home)
    assert [json.loads(line)["value"] for line in out.read_text().splitlines()] == ["hot"]
    assert list_dead_letters(blob).empty
