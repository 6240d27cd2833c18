"""The gate keeps retraining from learning the anomalies it should find, names the sensors it
refuses, and cannot ratchet: retraining on the same hours gives the same verdicts."""

import pandas as pd
import pytest

from bscore_assets.demo import planted_windows
from scoring.champion import anomaly_rate, flag_windows, gate, windows_champion_accepts
from scoring.simulate import simulate_readings
from scoring.training import train_device_bundle
from scoring.windows import tumbling_window_means

HOUR = pd.Timedelta(hours=1)
START = pd.Timestamp("2026-03-01T00:00")
WARN = 0.02


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


def test_anomalies_in_the_training_hours_do_not_blind_the_model(fleet_hours):
    clean, contaminated, holdout, later_clean, spiky, truth = fleet_hours
    trained_on_live_hours = train(contaminated)  # 2 % of its windows are anomalies
    assert recall(trained_on_live_hours, spiky, truth) >= 0.9
    assert anomaly_rate(trained_on_live_hours, later_clean) <= 2 * 0.005


def test_the_gate_names_each_sensor_over_the_limit_and_passes_the_rest(fleet_hours):
    clean, *_ = fleet_hours
    model = train(clean)
    burst, _ = device_windows(7, 1, 0.0, seed=8)
    noisy, _ = device_windows(7, 1, 0.3, seed=8)
    holdout = pd.concat([burst[burst["sensor"] != "2"], noisy[noisy["sensor"] == "2"]], ignore_index=True)

    decision = gate(model, holdout, WARN)

    assert sorted(decision.rates) == ["1", "2", "3"] and list(decision.over) == ["2"]
    assert decision.over["2"] > WARN >= max(decision.rates["1"], decision.rates["3"])
    assert not decision.passed and "sensor 2 flags" in decision.describe()
    assert gate(model, burst, WARN).passed


def test_hours_over_the_warn_rate_are_left_out_whole_and_kept_hours_keep_every_window(fleet_hours):
    clean, *_ = fleet_hours
    champion = train(clean)
    mild, _ = device_windows(1, 3, 0.002, seed=2)
    burst, _ = device_windows(8, 1, 0.3, seed=9)
    selection = windows_champion_accepts(pd.concat([mild, burst], ignore_index=True), champion, WARN)
    assert [f"{h:%H}" for h in selection.excluded_hours] == ["08"]
    # The champion flags windows of the mild hours too, and they stay: dropping them would
    # cut the tails every challenger calibrates its thresholds on.
    assert flag_windows(mild, champion).astype(bool).sum() > 0
    assert len(selection.windows) == len(mild) and selection.excluded_windows == len(burst)


def test_retraining_on_the_same_hours_cannot_ratchet(fleet_hours):
    clean, contaminated, _, later_clean, spiky, truth = fleet_hours
    hours = pd.concat([clean, contaminated], ignore_index=True)
    champion, rates = train(clean), []
    for _generation in range(5):
        champion = train(windows_champion_accepts(hours, champion, WARN).windows)
        rates.append((anomaly_rate(champion, later_clean), recall(champion, spiky, truth)))
    assert rates == [rates[0]] * 5
    assert rates[0][0] <= 2 * 0.005 and rates[0][1] >= 0.9
