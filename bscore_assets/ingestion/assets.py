"""``raw_readings``: every accepted reading of an hour, as Parquet parts under ``raw/<hour>/``.

A run drains the event source (every pending event, whatever its hour), then records its own
hours from the parts' names alone (parts are named by content and row count), without reading
them back.
"""

import dagster as dg

from bscore_assets.automation import lookback, minute_past_the_hour
from bscore_assets.hours import latest_materializations
from bscore_assets.ingestion.drain import drain_events
from bscore_assets.partitions import hour_key, hour_of_key, hourly_partitions_def
from bscore_assets.retention.records import refuse_retired_hours
from bscore_assets.retries import retry_on_outage
from bscore_assets.settings import PipelineSettings, Settings
from bscore_assets.storage import hours_between, raw_parts, raw_version, window_bounds
from bscore_assets.step_guard import guard_step
from resources.blob import BlobStore
from resources.events import EventSource
from scoring.blob_layout import part_rows


def raw_hour_metadata(blob: BlobStore, hour) -> dict:
    """What an hour's raw parts say about it, from one listing."""
    parts = raw_parts(blob, hour)
    return {"readings": sum(part_rows(key) for key in parts), "parts": len(parts), "raw_version": raw_version(parts)}


def raw_readings_condition(settings: Settings) -> dg.AutomationCondition:
    """Missing hours of the look-back, at the first tick after each hour's lateness has passed."""
    minute_past_the_hour(settings.allowed_lateness_minutes, "BSCORE_ALLOWED_LATENESS_MINUTES")
    ready_tick = dg.AutomationCondition.cron_tick_passed(f"{settings.allowed_lateness_minutes} * * * *", "UTC")
    return (
        lookback(settings)
        & dg.AutomationCondition.missing()
        & ready_tick.since_last_handled()
        & ~dg.AutomationCondition.in_progress()
    ).with_label("ready hour not recorded")


def raw_readings_asset(settings: Settings) -> dg.AssetsDefinition:
    """``raw_readings`` on the hours from ``BSCORE_START``, with its automation condition."""
    return dg.asset(
        name="raw_readings",
        partitions_def=hourly_partitions_def(settings),
        automation_condition=raw_readings_condition(settings),
        backfill_policy=dg.BackfillPolicy.single_run(),
        group_name="ingestion",
        kinds={"parquet"},
        check_specs=[dg.AssetCheckSpec("no_dead_letters", asset="raw_readings",
                                       description="Events this run drained were all accepted; "
                                                   "rejected ones are in deadletter/ with their reasons.")],
        description="Readings as devices sent them, de-duplicated, one folder of Parquet parts per hour.",
    )(raw_readings)


def raw_readings(context: dg.AssetExecutionContext, events: EventSource, blob: BlobStore, pipeline: PipelineSettings):
    guard_step()
    with retry_on_outage(context):
        hours = hours_between(*window_bounds(context.partition_time_window))
        refuse_retired_hours(blob, "raw_readings", hours)
        recorded = {hour_of_key(key) for key in latest_materializations(context.instance, "raw_readings")}
        summary = drain_events(events, blob, recorded - set(hours), late_policy=pipeline.late_policy,
                               log=context.log, declared_sensors=pipeline.declared_sensors)
        total = 0
        for hour in hours:
            metadata = raw_hour_metadata(blob, hour)
            context.add_asset_metadata(metadata, partition_key=hour_key(hour))
            total += metadata["readings"]
        reopened = sorted(hour_key(h) for h in summary.reopened_hours)
        context.log.info(f"drained {summary.accepted} readings ({summary.redelivered} re-delivered, not stored again; "
                         f"{summary.rejected} dead-lettered, {summary.late} late"
                         f"{', re-opening ' + ', '.join(reopened) if reopened else ''}); "
                         f"{total} readings recorded in {len(hours)} hour(s)")
        yield dg.MaterializeResult(metadata={"storage": blob.describe()})
        yield dg.AssetCheckResult(
            check_name="no_dead_letters",
            passed=summary.rejected == 0,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "events_drained": summary.accepted + summary.redelivered + summary.rejected,
                "readings_stored": summary.accepted,
                "readings_redelivered": summary.redelivered,
                "events_dead_lettered": summary.rejected,
                "reasons": dg.MetadataValue.json(summary.reasons),
                "late_readings": summary.late,
                "late_policy": pipeline.late_policy,
                "reopened_hours": dg.MetadataValue.json(reopened),
            },
        )
