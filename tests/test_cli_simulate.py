"""``bscore simulate``: the realistic and uniform profiles, and the labels file beside the readings."""

import pandas as pd
import pytest
from click.testing import CliRunner

from bscore_assets.cli import main
from scoring.anomaly_labels import label_mask


@pytest.mark.parametrize("profile", ["realistic", "uniform"])
def test_simulate_writes_readings_and_labels_that_match(bscore_home, tmp_path, profile):
    out, labels_out = tmp_path / "fleet.csv", tmp_path / "fleet.labels.csv"
    result = CliRunner().invoke(main, ["simulate", "--devices", "4", "--sensors", "3", "--hours", "0.5",
                                       "--start", "2026-01-01T00", "--anomaly-rate", "0.1", "--seed", "3",
                                       "--profile", profile, "--to", str(out), "--labels-out", str(labels_out)])
    assert result.exit_code == 0, result.output
    readings = pd.read_csv(out, parse_dates=["ts"], dtype={"device": str, "sensor": str})
    labels = pd.read_csv(labels_out, parse_dates=["start", "end"], dtype={"device": str, "sensor": str})
    assert list(labels.columns) == ["device", "sensor", "start", "end", "kind"] and len(labels) > 0
    assert f"{len(labels):,} labelled anomalies written to {labels_out}" in result.output
    planted = pd.read_csv(tmp_path / "fleet.planted.csv", parse_dates=["ts"], dtype={"device": str, "sensor": str})
    covered = readings.loc[label_mask(readings, labels), ["ts", "device", "sensor"]]
    pd.testing.assert_frame_equal(covered.reset_index(drop=True), planted)
    expected_kinds = {"offset"} if profile == "uniform" else {"spike", "level_shift", "stuck", "variance"}
    assert set(labels["kind"]) <= expected_kinds


def test_simulate_refuses_an_unknown_profile(bscore_home):
    result = CliRunner().invoke(main, ["simulate", "--profile", "wobbly", "--to", "x.csv"])
    assert result.exit_code == 2 and "wobbly" in result.output
