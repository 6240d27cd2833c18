"""A scored hour whose raw readings retention removed is refused by name when scored again,
instead of being re-aggregated from nothing; its SQL windows and predictions stay as they were."""

import pandas as pd
import pytest

from bscore_assets.retention.apply import apply_plan
from bscore_assets.retention.plan import plan_retention
from bscore_assets.retention.policy import RetentionPolicy
from tests.assets.conftest import SCORE_START


def test_scoring_an_hour_whose_raw_readings_were_removed_is_refused_by_name(scored):
    platform, _ = scored
    blob, sql = platform.resources["blob"], platform.resources["sql"]
    stored = len(sql.read_sensor_values(SCORE_START, SCORE_START + pd.Timedelta(hours=1)))
    policy = RetentionPolicy.from_settings(platform.settings)
    now = SCORE_START + pd.Timedelta(days=policy.days["raw"], hours=2)  # raw past its days, SQL not
    plan = plan_retention(policy, now, blob, sql, platform.resources["events"], platform.instance)
    assert plan.of("raw") and not plan.of("sql")
    apply_plan(plan, blob, sql, platform.instance)
    with pytest.raises(RuntimeError, match=r"2026-03-01T01 \(raw removed\)") as refused:
        platform.score(SCORE_START, SCORE_START)
    assert "retired by retention" in str(refused.value)
    assert len(sql.read_sensor_values(SCORE_START, SCORE_START + pd.Timedelta(hours=1))) == stored > 0
