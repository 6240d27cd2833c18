"""``raw_readings``: every accepted reading of an hour, as Parquet parts under ``raw/<hour>/``."""

import dagster as dg

from bscore_assets.ingestion.drain import drain_events
from bscore_assets.partitions import hour_key, hourly_partitions_def
from bscore_assets.retries import retry_on_outage
from bscore_assets.settings import PipelineSettings
from bscore_assets.storage import hours_between, read_raw_hour, window_bounds
from resources.blob import BlobStore
from resources.events import EventSource


@dg.asset(
    partitions_def=hourly_partitions_def,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name="ingestion",
    kinds={"parquet"},
    check_specs=[dg.AssetCheckSpec("no_dead_letters", asset="raw_readings",
                                   description="Events this run drained were all accepted; "
                                               "rejected ones are in deadletter/ with their reasons.")],
    description="Readings as devices sent them, de-duplicated, one folder of Parquet parts per hour.",
)
def raw_readings(context: dg.AssetExecutionContext, events: EventSource, blob: BlobStore, pipeline: PipelineSettings):
    with retry_on_outage(context):
        summary = drain_events(events, blob, late_policy=pipeline.late_policy, log=context.log)
        per_hour = {}
        for hour in hours_between(*window_bounds(context.partition_time_window)):
            readings = read_raw_hour(blob, hour)
            per_hour[hour_key(hour)] = {
                "readings": len(readings),
                "devices": int(readings["device"].nunique()),
                "sensors": int(readings["sensor"].nunique()),
            }
        total = sum(h["readings"] for h in per_hour.values())
        context.log.info(f"{total} readings in {len(per_hour)} hour(s); drained {summary.accepted} new events")
        reopened = sorted(hour_key(h) for h in summary.reopened_hours)
        yield dg.MaterializeResult(
            metadata={
                "readings": total,
                "hours": dg.MetadataValue.json(per_hour),
                "events_drained": summary.accepted,
                "events_dead_lettered": summary.rejected,
                "late_readings": summary.late,
                "reopened_hours": dg.MetadataValue.json(reopened),
                "storage": blob.describe(),
            }
        )
        yield dg.AssetCheckResult(
            check_name="no_dead_letters",
            passed=summary.rejected == 0,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "events_drained": summary.accepted + summary.rejected,
                "events_dead_lettered": summary.rejected,
                "reasons": dg.MetadataValue.json(summary.reasons),
                "late_readings": summary.late,
                "late_policy": pipeline.late_policy,
            },
        )
