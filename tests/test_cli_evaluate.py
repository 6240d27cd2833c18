"""``bscore evaluate`` and wide CSV label columns, as users run them (a subprocess per command)."""

from __future__ import annotations

import os

import pandas as pd
import pytest

from resources.sql import SqlStore
from tests.scoring.test_evaluation import HAND_PREDICTIONS, T0
from tests.test_cli import run

pytestmark = pytest.mark.slow  # CLI subprocesses on a scored home


@pytest.fixture
def env(bscore_home):
    return {**os.environ, "BSCORE_HOME": str(bscore_home)}


@pytest.fixture
def scored_home(bscore_home):
    """The hand-computed case of tests/scoring/test_evaluation.py stored as predictions."""
    bscore_home.mkdir(parents=True)
    rows = HAND_PREDICTIONS.assign(value=1.0, score=0.5, model_version="v1")
    SqlStore(url=f"sqlite:///{bscore_home / 'bscore.db'}").replace_predictions(
        rows, T0, T0 + pd.Timedelta(hours=1), ["s1", "s2"])
    return bscore_home


def _row(out: str, name: str) -> list[str]:
    return [line.split() for line in out.splitlines() if line.split()[:1] == [name]]


def test_evaluate_prints_the_hand_computed_figures_and_writes_a_plot(env, scored_home, tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_text("device,start,end,sensor\n"
                      "d1,2026-01-01T00:00:10,2026-01-01T00:00:25,\n"
                      "d1,2026-01-01T00:00:40,2026-01-01T00:00:45,s2\n")
    plot = tmp_path / "eval.png"
    result = run(["evaluate", "--labels", str(labels), "--from", "2026-01-01T00", "--to", "2026-01-01T00",
                  "--plot", str(plot), "--point-adjusted"], env)
    out = result.stdout
    # Point-wise rows: name, windows, labelled, flagged, precision, recall, F1, false alarms, ...
    device, sensor_overall = _row(out, "d1")[0], _row(out, "overall")
    assert device[:8] == ["d1", "10", "4", "5", "0.400", "0.500", "0.444", "0.500"]
    assert ["overall", "20", "7", "5", "0.400", "0.286", "0.333", "0.231"] in [r[:8] for r in sensor_overall]
    s1 = _row(out, "s1")
    assert s1[0][:10] == ["s1", "10", "3", "2", "0.500", "0.333", "0.400", "0.143", "0.462", "0.240"]
    assert s1[1][:8] == ["s1", "1", "1", "1.000", "2", "1", "0.500", "0.667"]  # event-wise
    assert s1[2] == ["s1", "0.750", "1.000", "0.857", "0.400"]  # point-adjusted, only when asked
    assert "POINT-ADJUSTED" in out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_evaluate_refuses_a_bad_labels_file_with_exit_2(env, scored_home, tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_text("device,start,end\nd1,2026-01-01T00:00:10,not a time\n")
    result = run(["evaluate", "--labels", str(labels)], env, check=False)
    assert result.returncode == 2
    assert "bscore:" in result.stderr and "labels.csv, line 2: end 'not a time'" in result.stderr


def _write_wide(path):
    """Device d1, readings every 5 s from 00:00:01; `anomaly` marks the readings at 11 s, 16 s
    (windows (10, 15] and (15, 20]: one span) and 41 s (window (40, 45])."""
    seconds = [1, 6, 11, 16, 21, 26, 31, 36, 41, 46]
    path.write_text("ts,device,s1,s2,anomaly,junk\n" + "".join(
        f"2026-01-01T00:00:{s:02d},d1,{i}.5,{10 - i}.5,{1 if s in (11, 16, 41) else 0},x\n"
        for i, s in enumerate(seconds)))


def test_wide_csv_label_column_becomes_stored_labels_that_evaluate_uses(env, scored_home, tmp_path):
    wide = tmp_path / "pump.csv"
    _write_wide(wide)
    out = run(["ingest", str(wide), "--label-column", "anomaly", "--exclude", "junk"], env).stdout
    assert "2 sensor column(s), label column(s) ['anomaly']" in out and "20 events landed" in out
    landed = "".join(p.read_text() for p in (scored_home / "landing").rglob("*") if p.is_file())
    assert '"sensor": "s1"' in landed and '"anomaly"' not in landed and '"junk"' not in landed
    labels = pd.read_csv(scored_home / "labels" / "pump.csv.csv", keep_default_na=False)
    assert labels[["device", "start", "end", "sensor", "kind"]].values.tolist() == [
        ["d1", "2026-01-01T00:00:10.000000", "2026-01-01T00:00:20.000000", "", "anomaly"],
        ["d1", "2026-01-01T00:00:40.000000", "2026-01-01T00:00:45.000000", "", "anomaly"]]
    out = run(["evaluate"], env).stdout  # every stored labels file
    # Stored verdicts: s1 flags windows 3, 6; labels cover windows 2, 3 and 8 of both sensors:
    # s1 tp 1, fp 1, fn 2, tn 6.
    assert "labels/pump.csv.csv" in out
    assert _row(out, "s1")[0][:8] == ["s1", "10", "3", "2", "0.500", "0.333", "0.400", "0.143"]


@pytest.mark.parametrize("options, message", [
    (["--columns", "s1,nope"], "has no column 'nope' (named by --columns)"),
    (["--label-column", "Anomaly"], "has no column 'Anomaly' (named by --label-column)"),
    (["--columns", "s1", "--exclude", "s1"], "names no sensor column left after"),
])
def test_wide_csv_column_choices_naming_no_column_are_refused(env, tmp_path, options, message):
    wide = tmp_path / "pump.csv"
    _write_wide(wide)
    result = run(["ingest", str(wide)] + options, env, check=False)
    assert result.returncode == 2 and message in result.stderr and "nothing was landed" in result.stderr
