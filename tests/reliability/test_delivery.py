"""Delivery faults: repeated events change nothing; late events re-open their hour or are
dead-lettered, by policy."""

import pandas as pd
import pytest

from bscore_assets.operations import Operations
from bscore_assets.settings import PipelineSettings
from scoring.simulate import simulate_readings
from tests.assets.conftest import SCORE_START, TRAIN_START, land

HOUR = pd.Timedelta(hours=1)


def test_events_delivered_twice_leave_aggregates_unchanged(platform, simulated):
    platform.ingest_hours(TRAIN_START, SCORE_START)
    sql = platform.resources["sql"]
    before = sql.read_sensor_values()
    land(platform, simulated.sample(frac=0.3, random_state=1))  # a third re-delivered
    platform.ingest_hours(TRAIN_START, SCORE_START)
    pd.testing.assert_frame_equal(sql.read_sensor_values(), before)


def with_late_policy(platform: Operations, policy: str) -> Operations:
    resources = {**platform.resources, "pipeline": PipelineSettings(late_policy=policy)}
    import dagster as dg

    defs = dg.Definitions(assets=list(platform.defs.assets), jobs=list(platform.defs.jobs or []),
                          resources=resources)
    return Operations(platform.settings, defs, platform.instance)


def late_readings():
    late = simulate_readings(1, 1, TRAIN_START + pd.Timedelta(minutes=30), 1 / 60, 0.0, seed=5)
    return late.assign(device="9")  # a device not seen before, so its windows are easy to find


def test_late_events_reopen_and_rescore_their_hour(trained):
    platform = trained
    platform.score(TRAIN_START, TRAIN_START)
    land(platform, late_readings())
    result = platform.ingest_hours(SCORE_START, SCORE_START)  # a later hour's run drains the late events
    drained = result.check("no_dead_letters").metadata
    assert drained["late_readings"] == 60
    assert drained["reopened_hours"] == ["2026-03-01-00:00"]
    reports = platform.score(TRAIN_START, TRAIN_START)
    sql = platform.resources["sql"]
    windows = sql.read_sensor_values(TRAIN_START, TRAIN_START + HOUR, devices=["9"])
    assert windows["readings"].sum() == 60
    # The hour was scored again, and the late device, which has no model, is reported as such.
    coverage = [r.check_metadata("sensor_predictions", "scoring_coverage") for r in reports]
    coverage = next(c for c in coverage if c)
    assert coverage["devices_missing_model"] == {"9": sorted(late_readings()["sensor"].astype(str).unique())}
    assert "9" not in set(sql.read_predictions(TRAIN_START, TRAIN_START + HOUR)["device"])


@pytest.mark.parametrize("policy", ["deadletter"])
def test_late_events_are_dead_lettered_by_policy(platform, simulated, policy):
    ops = with_late_policy(platform, policy)
    ops.ingest_hours(TRAIN_START, TRAIN_START)
    before = ops.resources["sql"].read_sensor_values(TRAIN_START, TRAIN_START + HOUR)
    land(ops, late_readings())
    result = ops.ingest_hours(SCORE_START, SCORE_START)
    assert result.check("no_dead_letters").metadata["reasons"] == {"late": 60}
    ops.ingest_hours(TRAIN_START, TRAIN_START)
    pd.testing.assert_frame_equal(ops.resources["sql"].read_sensor_values(TRAIN_START, TRAIN_START + HOUR), before)
