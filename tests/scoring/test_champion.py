"""The champion/challenger gate keeps retraining from learning the anomalies it should find."""

import pandas as pd
import pytest

from bscore_assets.demo import planted_windows
from scoring.champion import anomaly_rate, flag_windows, gate, windows_champion_accepts
from scoring.simulate import simulate_readings
from scoring.training import train_device_bundle
from scoring.windows import tumbling_window_means

HOUR = pd.Timedelta(hours=1)
START = pd.Timestamp("2026-03-01T00:00")
WARN, TOLERANCE = 0.02, 0.005


def device_windows(hour_offset: int, hours: int, rate: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    readings = simulate_readings(1, 3, START + HOUR * hour_offset, hours, anomaly_rate=rate, seed=seed)
    return tumbling_window_means(readings.drop(columns="planted"), 5), planted_windows(readings, 5)


def train(windows: pd.DataFrame):
    bundle, skipped = train_device_bundle("1", windows)
    assert not skipped
    return bundle


@pytest.fixture(scope="module")
def fleet_hours():
    clean, _ = device_windows(0, 1, 0.0, seed=1)
    contaminated, _ = device_windows(1, 3, 0.02, seed=2)
    holdout, _ = device_windows(4, 1, 0.01, seed=3)
    later_clean, _ = device_windows(5, 1, 0.0, seed=4)
    spiky, truth = device_windows(6, 1, 0.02, seed=5)
    return clean, contaminated, holdout, later_clean, spiky, truth


def recall(bundle, windows: pd.DataFrame, truth: pd.DataFrame) -> float:
    flagged = windows.assign(flagged=flag_windows(windows, bundle).astype(bool).to_numpy())
    merged = flagged.merge(truth, on=["device", "sensor", "ts"])
    return float(merged.loc[merged["planted"], "flagged"].mean())


def test_training_on_live_hours_poisons_and_the_gate_refuses_it(fleet_hours):
    clean, contaminated, holdout, later_clean, spiky, truth = fleet_hours
    champion = train(clean)
    poisoned = train(contaminated)  # what retraining on live hours did before the gate
    assert recall(poisoned, spiky, truth) < 0.9 and anomaly_rate(poisoned, later_clean) > WARN
    decision = gate(poisoned, champion, holdout, WARN, TOLERANCE)
    assert not decision.promoted and "hold-out" in decision.reason


def test_challenger_learns_only_what_the_champion_accepts(fleet_hours):
    clean, contaminated, holdout, later_clean, spiky, truth = fleet_hours
    champion = train(clean)
    selection = windows_champion_accepts(contaminated, champion, WARN)
    assert selection.excluded_windows >= 0.9 * int(flag_windows(contaminated, champion).astype(bool).sum())
    challenger = train(selection.windows)
    decision = gate(challenger, champion, holdout, WARN, TOLERANCE)
    assert decision.promoted, decision.reason
    assert anomaly_rate(challenger, later_clean) <= WARN
    assert recall(challenger, spiky, truth) >= 0.9


def test_hours_over_the_warn_rate_are_left_out_whole(fleet_hours):
    clean, *_ = fleet_hours
    champion = train(clean)
    burst, _ = device_windows(8, 1, 0.3, seed=9)
    selection = windows_champion_accepts(pd.concat([clean, burst], ignore_index=True), champion, WARN)
    assert [f"{h:%H}" for h in selection.excluded_hours] == ["08"]
    assert len(selection.windows) <= len(clean)


def test_first_model_is_promoted_without_a_champion(fleet_hours):
    clean, _, holdout, *_ = fleet_hours
    decision = gate(train(clean), None, holdout, WARN, TOLERANCE)
    assert decision.promoted and decision.champion_rate is None
