"""Retraining of every device's models on a cadence (``BSCORE_RETRAINING_CRON``), over the
``BSCORE_TRAINING_HOURS`` hours that were ready when the tick fired."""

from __future__ import annotations

import dagster as dg

from bscore_assets.hours import HOUR, latest_ready_hour
from bscore_assets.jobs import training_job
from bscore_assets.partitions import device_partitions_def, hour_key
from bscore_assets.runs import range_tags
from bscore_assets.settings import Settings

SETTINGS = Settings.from_env()


@dg.schedule(job=training_job, cron_schedule=SETTINGS.retraining_cron, execution_timezone="UTC",
             default_status=dg.DefaultScheduleStatus.STOPPED)
def device_retraining_schedule(context: dg.ScheduleEvaluationContext):
    """Retrain all registered devices in one run; the new versions become current, which the
    rescoring sensor picks up."""
    settings = Settings.from_env()
    devices = context.instance.get_dynamic_partitions(device_partitions_def.name)
    if not devices:
        return dg.SkipReason("no devices registered yet")
    last = latest_ready_hour(context.scheduled_execution_time, settings.allowed_lateness_minutes)
    first = max(last - HOUR * (settings.training_hours - 1), settings.start)
    config = {"ops": {"device_models": {"config": {"from_hour": first.isoformat(), "to_hour": last.isoformat()}}}}
    return dg.RunRequest(
        run_key=f"retrain-{hour_key(last)}",
        run_config=config,
        # Range tags follow the partitions' stored order: first to last covers every device.
        tags={**range_tags(devices[0], devices[-1]), "bscore/training_window": f"{hour_key(first)}..{hour_key(last)}"},
    )
