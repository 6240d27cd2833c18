"""Hourly scoring of the last closed hour for every sensor, and of earlier hours it missed.

The schedule ticks at ``BSCORE_SCORING_MINUTE`` past the hour and scores the hours, within
the last ``BSCORE_RESCORING_HOURS``, that are past their allowed lateness, have aggregates,
and have a sensor whose predictions are missing or older than the aggregates (late
readings re-aggregated an hour, or aggregation finished after an earlier tick).
"""

from __future__ import annotations

import dagster as dg
import pandas as pd

from bscore_assets.hours import HOUR, aggregated_hours, hour_blocks, latest_materializations, latest_ready_hour
from bscore_assets.jobs import scoring_job
from bscore_assets.partitions import hour_key, hour_sensor_key, sensor_partitions_def
from bscore_assets.runs import hour_sensor_range_tags
from bscore_assets.settings import Settings

SETTINGS = Settings.from_env()


def hours_to_score(instance: dg.DagsterInstance, latest: pd.Timestamp, lookback: int, sensors: list[str]):
    """Aggregated hours in ``(latest - lookback h, latest]`` with a sensor not scored since."""
    aggregated = aggregated_hours(instance)
    predicted = latest_materializations(instance, "sensor_predictions")
    due = []
    for hour in (latest - HOUR * back for back in range(lookback)):
        if hour not in aggregated:
            continue
        keys = [hour_sensor_key(hour, s) for s in sensors]
        if any(predicted.get(key, -1) < aggregated[hour] for key in keys):
            due.append(hour)
    return sorted(due)


@dg.schedule(job=scoring_job, cron_schedule=f"{SETTINGS.scoring_minute} * * * *", execution_timezone="UTC",
             default_status=dg.DefaultScheduleStatus.STOPPED)
def hourly_scoring_schedule(context: dg.ScheduleEvaluationContext):
    """Score every sensor of the hours that are ready and not scored since their aggregation, one run per block."""
    settings = Settings.from_env()
    latest = latest_ready_hour(context.scheduled_execution_time, settings.allowed_lateness_minutes)
    # Range tags follow the partitions' stored order, so the sensors stay in the instance's order.
    sensors = context.instance.get_dynamic_partitions(sensor_partitions_def.name)
    if not sensors:
        return dg.SkipReason("no sensors registered yet")
    due = hours_to_score(context.instance, latest, max(settings.rescoring_hours, 1), sensors)
    if not due:
        return dg.SkipReason(f"nothing to score through {hour_key(latest)}: no aggregated hour without "
                             "up-to-date predictions")
    return [
        dg.RunRequest(run_key=f"score-{hour_key(first)}-{hour_key(last)}-{context.scheduled_execution_time:%Y%m%d%H%M}",
                      tags=hour_sensor_range_tags(first, last, sensors))
        for first, last in hour_blocks(due)
    ]
