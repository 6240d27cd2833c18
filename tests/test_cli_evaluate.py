"""``bscore evaluate`` and wide CSV label columns, as users run them (a subprocess per command)."""

from __future__ import annotations

import os

import pandas as pd
import pytest

from resources.sql import SqlStore
from tests.scoring.test_evaluation import HAND_PREDICTIONS, T0
from tests.test_cli import run


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
