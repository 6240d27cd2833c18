"""Tolerant file ingest: ``--max-bad N`` lands every good line once and dead-letters every bad
one with its file and line; strict mode (the default) writes every refused line to a report."""

import csv
import json

import pandas as pd

from resources.blob import LocalBlobStore
from tests.reliability.test_input_files import RECENT, bscore, env, landed  # noqa: F401  (the env fixture)


def readings_file(tmp_path, bad_every=10, lines=100):
    """A JSON-lines file whose every ``bad_every``-th line is refused (in three ways, one twice)."""
    bad_kinds = ['{"broken"', json.dumps({"ts": RECENT, "device": "1", "sensor": "1", "value": "hot"}),
                 json.dumps({"ts": RECENT, "device": "", "sensor": "1", "value": 1})]
    good, bad, rows = [], {}, []
    for line in range(1, lines + 1):
        if line % bad_every == 0:
            rows.append(bad_kinds[(line // bad_every) % len(bad_kinds)])
            bad[line] = rows[-1]
        else:
            rows.append(json.dumps({"ts": RECENT, "device": str(line), "sensor": "1", "value": float(line)}))
            good.append(rows[-1])
    path = tmp_path / "readings.jsonl"
    path.write_text("\n".join(rows) + "\n")
    return path, good, bad


def dead_letters(home):
    blob = LocalBlobStore(root=str(home / "blob"))
    frames = [blob.read_parquet(key) for key in blob.list("deadletter/")]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["body", "reason", "file", "line"])


def test_max_bad_lands_every_good_line_once_and_dead_letters_every_bad_one_with_its_line(env, bscore_home, tmp_path):  # noqa: F811
    path, good, bad = readings_file(tmp_path)
    result = bscore(["ingest", "--max-bad", "10", path], env)
    assert sorted(map(json.dumps, landed(bscore_home))) == sorted(map(json.dumps, map(json.loads, good)))
    dead = dead_letters(bscore_home)
    assert sorted(zip(dead["line"], dead["body"])) == sorted(bad.items())
    assert set(dead["file"]) == {str(path)}
    assert set(dead["reason"].str.split(":").str[0]) == {"malformed JSON", "bad value", "bad device"}
    assert f"{len(good):,} events landed" in result.stdout and "10 refused line(s) dead-lettered" in result.stdout


def test_a_file_with_more_bad_lines_than_allowed_is_refused_whole(env, bscore_home, tmp_path):  # noqa: F811
    path, _, _ = readings_file(tmp_path)
    result = bscore(["ingest", "--max-bad", "9", path], env, check=False)
    assert result.returncode == 2 and "more than --max-bad 9" in result.stderr, result.stderr
    assert landed(bscore_home) == [] and dead_letters(bscore_home).empty


def test_strict_mode_reports_every_refused_line_in_a_file(env, bscore_home, tmp_path):  # noqa: F811
    path, _, bad = readings_file(tmp_path, bad_every=3, lines=120)  # 40 refused: more than are printed
    result = bscore(["ingest", path], env, check=False)
    assert result.returncode == 2 and landed(bscore_home) == []
    [report] = (bscore_home / "refused").glob("*.csv")
    assert str(report) in result.stderr
    with open(report, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [(row["file"], int(row["line"])) for row in rows] == [(str(path), line) for line in sorted(bad)]
    assert all(row["reason"] for row in rows)
