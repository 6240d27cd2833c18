"""The retention domain's definitions: ``retention_job`` applies the policy, ``retention_schedule``
runs it on ``BSCORE_RETENTION_CRON`` (off until turned on, like bscore's other automation)."""

import dagster as dg
import pandas as pd

from bscore_assets.retention.apply import apply_plan
from bscore_assets.retention.plan import describe_plan, plan_retention
from bscore_assets.retention.policy import RetentionPolicy
from bscore_assets.settings import Settings
from resources.blob import BlobStore
from resources.events import EventSource
from resources.sql import SqlStore


def retention_job(settings: Settings) -> dg.JobDefinition:
    policy = RetentionPolicy.from_settings(settings)

    @dg.op(name="apply_retention", description="Remove what the retention policy says is past its days.")
    def apply_retention(context: dg.OpExecutionContext, blob: BlobStore, sql: SqlStore, events: EventSource):
        plan = plan_retention(policy, pd.Timestamp.now("UTC"), blob, sql, events, context.instance)
        for line in describe_plan(plan):
            context.log.info(line)
        # The current run is never among them: only finished runs past the policy's days are.
        totals = apply_plan(plan, blob, sql, context.instance)
        yield dg.Output(None, metadata={
            **{f"{kind}_removed": total["count"] for kind, total in totals.items()},
            "bytes_removed": sum(t["bytes"] or 0 for t in totals.values()),
            "retired_before": dg.MetadataValue.json({k: f"{v:%Y-%m-%dT%H}" for k, v in plan.retire.items()}),
        })

    @dg.job(name="retention_job", description="Apply the retention policy (days per kind of data) to every store.")
    def job():
        apply_retention()

    return job


def defs(settings: Settings) -> dg.Definitions:
    job = retention_job(settings)
    schedule = dg.ScheduleDefinition(name="retention_schedule", job=job, cron_schedule=settings.retention_cron,
                                     execution_timezone="UTC", default_status=dg.DefaultScheduleStatus.STOPPED)
    return dg.Definitions(jobs=[job], schedules=[schedule])
