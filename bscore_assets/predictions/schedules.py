"""Hourly scoring of the last closed hour, for every sensor."""

import dagster as dg
import pandas as pd

from bscore_assets.jobs import ingest_job, scoring_job
from bscore_assets.partitions import hour_key, sensor_partitions_def
from bscore_assets.runs import hour_sensor_range_tags

AGGREGATION_MINUTE = 5
SCORING_MINUTE = 15


def last_closed_hour(moment) -> pd.Timestamp:
    return pd.Timestamp(moment).tz_convert("UTC").tz_localize(None).floor("h") - pd.Timedelta(hours=1)


@dg.schedule(job=ingest_job, cron_schedule=f"{AGGREGATION_MINUTE} * * * *", execution_timezone="UTC",
             default_status=dg.DefaultScheduleStatus.STOPPED)
def hourly_aggregation_schedule(context: dg.ScheduleEvaluationContext):
    """Drain events and aggregate the last closed hour, after its allowed lateness."""
    hour = last_closed_hour(context.scheduled_execution_time)
    return dg.RunRequest(run_key=hour_key(hour), partition_key=hour_key(hour))


@dg.schedule(job=scoring_job, cron_schedule=f"{SCORING_MINUTE} * * * *", execution_timezone="UTC",
             default_status=dg.DefaultScheduleStatus.STOPPED)
def hourly_scoring_schedule(context: dg.ScheduleEvaluationContext):
    """Score the last closed hour for every sensor, in one run."""
    hour = last_closed_hour(context.scheduled_execution_time)
    sensors = context.instance.get_dynamic_partitions(sensor_partitions_def.name)
    if not sensors:
        return dg.SkipReason("no sensors registered yet")
    return dg.RunRequest(run_key=hour_key(hour), tags=hour_sensor_range_tags(hour, hour, sorted(sensors)))
