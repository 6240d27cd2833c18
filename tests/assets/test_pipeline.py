"""Every asset and check materialized in-process on a temporary BSCORE_HOME, asserted on data."""

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose

from bscore_assets.storage import read_prediction_partition, read_raw_hour
from scoring.model_store import load_current_bundles
from scoring.training import build_pipeline
from bscore_assets.operations import ChecksFailed
from tests.assets.conftest import SCORE_START, TRAIN_START, land, simulated_readings

HOUR = pd.Timedelta(hours=1)


def independent_windows(readings: pd.DataFrame, seconds: int) -> pd.DataFrame:
    """Window means computed without the library: each reading to the first boundary at or after it."""
    frame = readings.assign(end=readings["ts"].dt.ceil(f"{seconds}s"))
    out = frame.groupby(["device", "sensor", "end"])["value"].agg(["mean", "count"]).reset_index()
    return out.rename(columns={"end": "ts", "mean": "value", "count": "readings"})


def check_results(report) -> dict:
    return {check.name: check for check in report.checks}


def test_aggregates_match_independent_windows(platform, simulated):
    result = platform.ingest_hours(TRAIN_START, SCORE_START)
    stored = platform.resources["sql"].read_sensor_values(TRAIN_START, SCORE_START + HOUR)
    expected = independent_windows(simulated.drop(columns="planted"), 5)
    merged = expected.merge(stored, on=["device", "sensor", "ts"], suffixes=("_expected", "_stored"))
    assert len(stored) == len(expected) == 2 * 3 * 5 * 720
    assert len(merged) == len(expected)
    assert_allclose(merged["value_stored"], merged["value_expected"], atol=1e-9)
    assert (merged["readings_stored"] == merged["readings_expected"]).all()
    assert all(check.passed for check in check_results(result).values())
    assert set(check_results(result)) == {"readings_reconciled", "finite_values", "device_coverage", "no_dead_letters"}
    assert result.totals == {"raw_readings.readings": 2 * 3 * 5 * 3600, "sensor_aggregates.windows": len(expected),
                             "sensor_aggregates.readings": 2 * 3 * 5 * 3600, "sensor_aggregates.redelivered": 0,
                             "sensor_aggregates.conflicts": 0}
    raw = read_raw_hour(platform.resources["blob"], TRAIN_START)
    assert len(raw) == 3 * 5 * 3600


def test_predictions_of_the_svm_kind_equal_scikit_learn_at_the_calibrated_threshold(trained_kind):
    platform = trained_kind("svm")
    ingest, result = platform.score(SCORE_START, SCORE_START)
    sql = platform.resources["sql"]
    predictions = sql.read_predictions(SCORE_START, SCORE_START + HOUR)
    training = sql.read_sensor_values(TRAIN_START, TRAIN_START + HOUR)
    bundles = load_current_bundles(platform.resources["blob"], ["1", "2", "3"])
    assert len(predictions) == 3 * 5 * 720
    for (device, sensor), rows in predictions.groupby(["device", "sensor"]):
        train_rows = training[(training["device"] == device) & (training["sensor"] == sensor)]
        pipeline = build_pipeline().fit(train_rows[["value"]].to_numpy())
        x = rows[["value"]].to_numpy()
        assert_allclose(rows["score"], pipeline.decision_function(x), atol=1e-9)
        threshold = bundles[device].models[sensor].threshold
        decided = np.abs(rows["score"].to_numpy() - threshold) > 1e-9
        assert (rows["is_anomaly"].to_numpy()[decided] == (pipeline.decision_function(x) <= threshold)[decided]).all()
    blob_rows = read_prediction_partition(platform.resources["blob"], SCORE_START, "1")
    assert len(blob_rows) == 3 * 720
    assert_allclose(blob_rows.sort_values(["device", "ts"])["score"],
                    predictions[predictions["sensor"] == "1"].sort_values(["device", "ts"])["score"], atol=0)
    checks = check_results(result)
    assert checks["scoring_coverage"].passed
    assert checks["anomaly_rate"].metadata["max_anomaly_rate"] < 0.05
    # The run's totals are what it stored, summed over its partitions.
    assert result.totals["sensor_predictions.rows_scored"] == len(predictions)
    assert result.totals["sensor_predictions.anomalies"] == int(predictions["is_anomaly"].sum())


def test_rerunning_partitions_leaves_row_counts_unchanged(scored):
    platform, _ = scored
    sql, blob = platform.resources["sql"], platform.resources["blob"]
    counts = (len(sql.read_sensor_values()), len(sql.read_predictions()), len(read_raw_hour(blob, SCORE_START)))
    land(platform, simulated_readings())  # the same events delivered again
    platform.score(SCORE_START, SCORE_START)
    platform.score(SCORE_START, SCORE_START, sensors=["2"])
    assert (len(sql.read_sensor_values()), len(sql.read_predictions()), len(read_raw_hour(blob, SCORE_START))) == counts


def test_anomaly_rate_check_fails_above_error_threshold(trained):
    platform = trained
    from scoring.simulate import simulate_readings

    burst = simulate_readings(3, 5, SCORE_START + HOUR, 1, anomaly_rate=0.3, seed=13)
    land(platform, burst)
    with pytest.raises(ChecksFailed, match="sensor_predictions.anomaly_rate") as failed:
        platform.score(SCORE_START + HOUR, SCORE_START + HOUR, sensors=["3"])
    check = check_results(failed.value.reports[-1])["anomaly_rate"]
    assert not check.passed
    assert check.severity == "ERROR"
    assert check.metadata["max_anomaly_rate"] > platform.resources["pipeline"].anomaly_rate_error
    per_device = check.metadata["per_device_rate"]
    assert set(next(iter(per_device.values()))) == {"1", "2", "3"}


def test_devices_without_model_are_reported(platform, simulated):
    platform.train(["1", "2"], TRAIN_START, TRAIN_START)
    *_, result = platform.score(SCORE_START, SCORE_START, sensors=["1"])
    coverage = check_results(result)["scoring_coverage"]
    assert not coverage.passed and coverage.severity == "WARN"
    assert coverage.metadata["devices_missing_model"] == {"3": ["1"]}
    predictions = platform.resources["sql"].read_predictions(SCORE_START, SCORE_START + HOUR)
    assert sorted(predictions["device"].unique()) == ["1", "2"]


def test_unknown_sensor_is_a_clear_error(platform, simulated):
    with pytest.raises(ValueError, match="--sensor 9"):
        platform.score(SCORE_START, SCORE_START, sensors=["9"])


def test_default_training_window_ends_with_the_newest_aggregated_hour(platform, simulated):
    from bscore_assets.runs import range_tags

    platform.ingest_hours(TRAIN_START, SCORE_START)
    result = platform.defs.resolve_job_def("training_job").execute_in_process(
        instance=platform.instance, tags=range_tags("1", "3"))
    [event] = result.get_asset_materialization_events()[:1]
    meta = event.materialization.metadata
    assert meta["training_to"].value == (SCORE_START + HOUR).isoformat()
    assert meta["training_from"].value == (SCORE_START + HOUR - pd.Timedelta(hours=24)).isoformat()
    assert meta["holdout_from"].value == SCORE_START.isoformat()
    # Device 1's own metadata: a first model too learns the hours before the hold-out hour and
    # is judged on it, sensor by sensor.
    assert meta["windows_trained"].value == 5 * 720
    assert sorted(meta["holdout_rates"].value) == ["1", "2", "3", "4", "5"]
    assert meta["status"].value == "promoted"
