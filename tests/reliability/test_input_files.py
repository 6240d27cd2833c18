"""Every input file either lands whole or is refused out loud, naming the file and the line
(issue 11: cases 1, 7, 12 and 16's CSV and simulate cases)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.slow  # CLI subprocesses

ROOT = Path(__file__).resolve().parents[2]
NOW = pd.Timestamp.now("UTC").tz_localize(None).floor("h")
RECENT = (NOW - pd.Timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M:%S")


def bscore(args, env, check=True):
    result = subprocess.run([sys.executable, "-m", "bscore_assets.cli", *map(str, args)], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.fixture
def env(bscore_home):
    return {**os.environ, "BSCORE_HOME": str(bscore_home)}


def landed(home: Path) -> list[dict]:
    """Every event in the landing folder."""
    return [json.loads(line) for path in sorted((home / "landing").glob("*.jsonl"))
            for line in path.read_text().splitlines() if line.strip()]


def test_two_aliases_of_one_field_are_refused_naming_the_columns(env, bscore_home, tmp_path):
    # Case 1: both Tag and Sensor; before, 2 of 1,000 events landed with the column's name as sensor.
    path = tmp_path / "both.csv"
    rows = "".join(f"{RECENT},1,{i % 5 + 1},{i % 5 + 1},{10 + i % 3}\n" for i in range(1000))
    path.write_text("TS,Device,Tag,Sensor,Value\n" + rows)
    result = bscore(["ingest", path], env, check=False)
    assert result.returncode == 2
    assert "both.csv, line 1" in result.stderr and "['Tag', 'Sensor']" in result.stderr
    assert landed(bscore_home) == []


def test_what_the_drain_would_dead_letter_is_refused_at_ingest_by_file_and_line(env, bscore_home, tmp_path):
    # Case 7: before, `ingest` said "N events landed" and the drain dead-lettered them later.
    future = (NOW + pd.Timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%S")
    path = tmp_path / "readings.csv"
    path.write_text("ts,device,sensor,value\n"
                    f"{RECENT},1,1,10.5\n"
                    f"{RECENT},1,1,hot\n"          # line 3: unparsable value
                    "yesterday,1,1,10\n"            # line 4: unparsable time
                    f"{future},1,1,10\n"            # line 5: too far in the future
                    f"{RECENT},,1,10\n"             # line 6: no device
                    "2001-01-01T00:00:00,1,1,10\n"  # line 7: older than 10 years
                    f"{RECENT},1,2,inf\n")          # line 8: not finite
    events = tmp_path / "events.jsonl"
    events.write_text(json.dumps({"ts": RECENT, "device": "1", "sensor": "1", "value": 1}) + "\n"
                      + json.dumps({"ts": RECENT, "device": True, "sensor": "1", "value": 1}) + "\n")
    result = bscore(["ingest", path, events], {**env, "BSCORE_START": "2000-01-01T00:00"}, check=False)
    assert result.returncode == 2, result.stdout + result.stderr
    for line, reason in [(3, "bad value"), (4, "bad ts"), (5, "ts out of range"), (6, "bad device"),
                         (7, "ts out of range"), (8, "bad value")]:
        assert f"readings.csv, line {line}: {reason}" in result.stderr
    assert "events.jsonl, line 2: bad device" in result.stderr
    assert "nothing was landed" in result.stderr
    assert landed(bscore_home) == []


def test_one_bad_file_lands_nothing_of_the_command(env, bscore_home, tmp_path):
    # Case 16: before, a.csv was landed when b.csv then failed to parse, with no file named.
    good, bad = tmp_path / "a.csv", tmp_path / "b.csv"
    good.write_text("ts,device,sensor,value\n" + "".join(f"{RECENT},1,1,{i}\n" for i in range(100)))
    bad.write_text(f"ts,device,sensor,value\n{RECENT},1,1,1\n{RECENT},1,1,1,7\n")
    result = bscore(["ingest", good, bad], env, check=False)
    assert result.returncode == 2
    assert "b.csv, line 3: CSV row cannot be read: 5 fields where the header has 4" in result.stderr
    assert landed(bscore_home) == []
    assert "100 events landed" in bscore(["ingest", good], env).stdout
    assert len(landed(bscore_home)) == 100


def test_long_lines_and_binary_files_are_refused_in_bounded_memory(env, bscore_home, tmp_path):
    # Case 12: before, /dev/zero grew to 9 GB; a line of any length was read whole.
    long_line = tmp_path / "long.jsonl"
    long_line.write_text(json.dumps({"ts": RECENT, "device": "1", "sensor": "1", "value": 1}) + "\n"
                         + '{"ts": "' + "x" * 100_000 + '"}\n')
    result = bscore(["ingest", long_line], env, check=False)
    assert result.returncode == 2 and "long.jsonl, line 2: line is longer than 4096 bytes" in result.stderr
    result = bscore(["ingest", "/dev/zero"], env, check=False)
    assert result.returncode == 2 and "/dev/zero, line 1: not a text file" in result.stderr
    assert landed(bscore_home) == []


PEAK_RSS = """
import resource, sys
import pandas as pd
from bscore_assets.ingestion.file_ingest import check_files
from scoring.input_files import IdMapping
for path, rows in zip(sys.argv[1::2], sys.argv[2::2]):
    [check] = check_files([path], IdMapping(), pd.Timestamp("2000-01-01"), progress=False)
    assert check.events == int(rows) and check.refused == 0, (check.events, check.errors)
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""


def test_checking_a_file_takes_memory_independent_of_its_size(tmp_path):
    # Case 12: before, ingest peaked at ~7x the file's size (259 MB -> 2.1 GB).
    args = []
    for rows in (150_000, 750_000):
        path = tmp_path / f"r{rows}.csv"
        frame = pd.DataFrame({"ts": RECENT, "device": (pd.RangeIndex(rows) % 40).astype(str),
                              "sensor": (pd.RangeIndex(rows) % 5).astype(str), "value": pd.RangeIndex(rows) * 0.5})
        frame.to_csv(path, index=False)
        args += [str(path), str(rows)]
    out = subprocess.run([sys.executable, "-c", PEAK_RSS, *args], cwd=ROOT, capture_output=True,
                         text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    small, large = map(int, out.stdout.split())
    size_mb = (tmp_path / "r750000.csv").stat().st_size / 2**20
    assert size_mb > 20
    # The peak after the large file (5x the small one's size) is the small file's peak.
    assert large - small < 20, (small, large, size_mb)


def test_simulated_file_is_accepted_by_ingest(env, bscore_home, tmp_path):
    # Case 16: before, `simulate --to x.csv` wrote a `planted` column that ingest refused.
    out = tmp_path / "x.csv"
    printed = bscore(["simulate", "--devices", "2", "--sensors", "2", "--hours", "0.05", "--to", out], env).stdout
    assert "x.planted.csv" in printed
    assert list(pd.read_csv(out, nrows=1).columns) == ["ts", "device", "sensor", "value"]
    truth = pd.read_csv(tmp_path / "x.planted.csv")
    assert list(truth.columns) == ["ts", "device", "sensor"]
    assert "720 events landed" in bscore(["ingest", out], env).stdout
    assert len(landed(bscore_home)) == 720


def test_wide_semicolon_export_with_zones_and_names_ids_cannot_hold(env, bscore_home, tmp_path):
    path = tmp_path / "testbed.csv"
    stamp = pd.Timestamp(RECENT).tz_localize("UTC").tz_convert("Europe/Berlin")
    path.write_text("Zeitstempel;Flow Rate (l/min);Temp °C;pressure\n".replace("Zeitstempel", "Timestamp")
                    + f"{stamp.isoformat()};1,5;20;\n\n"
                    + f"{(stamp + pd.Timedelta(seconds=1)).isoformat()};1,75;;3\n", encoding="utf-8")
    refused = bscore(["ingest", path], env, check=False)
    assert refused.returncode == 2 and "no device column" in refused.stderr and "--device" in refused.stderr
    refused = bscore(["ingest", path, "--device", "pump 1"], env, check=False)
    assert refused.returncode == 2 and "line 2: bad value: '1,5'" in refused.stderr and "--decimal-comma" in refused.stderr
    out = bscore(["ingest", path, "--device", "pump 1", "--decimal-comma"], env).stdout
    assert "wide CSV, delimiter ';'" in out and "Flow Rate (l/min)  ->  Flow_Rate_l_min" in out
    events = landed(bscore_home)
    assert [(e["device"], e["sensor"], float(e["value"])) for e in events] == [
        ("pump_1", "Flow_Rate_l_min", 1.5), ("pump_1", "Temp_C", 20.0),
        ("pump_1", "Flow_Rate_l_min", 1.75), ("pump_1", "pressure", 3.0)]
    assert pd.Timestamp(events[0]["ts"]).tz_convert("UTC").tz_localize(None) == pd.Timestamp(RECENT)
    kept = pd.read_csv(bscore_home / "id_mapping.csv")
    assert dict(zip(kept["name"], kept["id"])) == {"pump 1": "pump_1", "Flow Rate (l/min)": "Flow_Rate_l_min",
                                                   "Temp °C": "Temp_C"}
    # A name that is itself the id another name was mapped to would merge two series: refused.
    clash = tmp_path / "clash.csv"
    clash.write_text(f"ts,device,Flow_Rate_l_min\n{RECENT},pump_2,1\n")
    refused = bscore(["ingest", clash], env, check=False)
    assert refused.returncode == 2 and "'Flow_Rate_l_min' is also the id of 'Flow Rate (l/min)'" in refused.stderr
