"""Sensors of the ingestion domain: drain events into raw storage and aggregate ready hours;
keep the fleet's dynamic partitions in step with the data.

Both keep a JSON cursor, so a restarted daemon resumes where the last evaluation stopped.
"""

from __future__ import annotations

import json

import dagster as dg
import pandas as pd

from bscore_assets.hours import aggregated_hours, hour_blocks, latest_ready_hour
from bscore_assets.ingestion.drain import drain_events
from bscore_assets.ingestion.fleet import fleet_partition_requests, silent_devices
from bscore_assets.jobs import ingest_job
from bscore_assets.partitions import device_partitions_def, hour_key, hour_of_key
from bscore_assets.runs import hour_range_tags
from bscore_assets.settings import PipelineSettings, Settings
from bscore_assets.storage import raw_prefix
from resources.blob import BlobStore
from resources.events import EventSource
from resources.sql import SqlStore


def _load(cursor: str | None, default: dict) -> dict:
    return {**default, **json.loads(cursor)} if cursor else dict(default)


@dg.sensor(job=ingest_job, minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.STOPPED)
def event_ingestion_sensor(context: dg.SensorEvaluationContext, events: EventSource, blob: BlobStore,
                           pipeline: PipelineSettings):
    """Drain the event source into raw storage every tick; once an hour has closed and its
    allowed lateness has passed, materialize its ``raw_readings`` and ``sensor_aggregates``.

    The cursor holds the hours that received readings but are not ready yet. Readings that
    arrive for an hour already aggregated make it ready again, so it is re-aggregated (or,
    with ``late_policy="deadletter"``, are dead-lettered as the asset's own drain does).
    """
    settings = Settings.from_env()
    cursor = _load(context.cursor, {"waiting": [], "tick": 0})
    summary = drain_events(events, blob, late_policy=pipeline.late_policy, log=context.log)
    too_old = [h for h in summary.hours if h < settings.start]
    if too_old:
        context.log.warning(f"readings of {len(too_old)} hour(s) before BSCORE_START={settings.start:%Y-%m-%dT%H:%M} "
                            "are stored but not aggregated; set an earlier BSCORE_START to include them")
    candidates = {hour_of_key(k) for k in cursor["waiting"]} | {h for h in summary.hours if h >= settings.start}
    latest = latest_ready_hour(pd.Timestamp.now("UTC"), settings.allowed_lateness_minutes)
    # A run's own drain can store readings this sensor never saw, so the latest ready hour
    # is also aggregated when it has raw readings but no aggregates yet.
    if latest >= settings.start and latest not in candidates and latest not in aggregated_hours(context.instance) \
            and blob.list(raw_prefix(latest)):
        candidates.add(latest)
    ready = {h for h in candidates if h <= latest}
    tick = cursor["tick"] + 1
    new_cursor = json.dumps({"waiting": sorted(hour_key(h) for h in candidates - ready), "tick": tick})
    requests = [
        dg.RunRequest(run_key=f"ingest-{tick}-{hour_key(first)}", tags=hour_range_tags(first, last))
        for first, last in hour_blocks(ready)
    ]
    if not requests:
        waiting = ", ".join(sorted(hour_key(h) for h in candidates)) or "none"
        return dg.SensorResult(skip_reason=f"drained {summary.accepted} event(s); no hour ready "
                                           f"(waiting for: {waiting})", cursor=new_cursor)
    context.log.info(f"drained {summary.accepted} event(s); aggregating {len(ready)} ready hour(s)")
    return dg.SensorResult(run_requests=requests, cursor=new_cursor)


@dg.sensor(minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.STOPPED)
def fleet_partitions_sensor(context: dg.SensorEvaluationContext, sql: SqlStore):
    """Register devices and sensors that appear in the aggregates as dynamic partitions, and
    report registered devices that stopped sending (no windows in the last hours).

    Silence is checked once per newly aggregated hour (the cursor remembers the hour and the
    silent devices); a device going silent or coming back is recorded as an observation of
    its ``device_models`` partition, so the UI shows it on the device.
    """
    settings = Settings.from_env()
    cursor = _load(context.cursor, {"checked_hour": None, "silent": []})
    partition_requests = fleet_partition_requests(context.instance, sql)
    added = {r.partitions_def_name: list(r.partition_keys) for r in partition_requests}
    hours = aggregated_hours(context.instance)
    observations, messages = [], [f"new {name}: {', '.join(keys)}" for name, keys in added.items()]
    latest = max(hours) if hours else None
    if latest is not None and hour_key(latest) != cursor["checked_hour"]:
        devices = [*context.instance.get_dynamic_partitions(device_partitions_def.name), *added.get("devices", [])]
        silent = silent_devices(sql, devices, latest, settings.silent_after_hours)
        before = set(cursor["silent"])
        for device, status in [*((d, "stopped sending") for d in silent if d not in before),
                               *((d, "sending again") for d in sorted(before - set(silent)))]:
            observations.append(dg.AssetObservation(
                asset_key="device_models", partition=device,
                metadata={"status": status, "checked_through_hour": hour_key(latest),
                          "silent_after_hours": settings.silent_after_hours}))
            context.log.warning(f"device {device} {status} (checked through {hour_key(latest)})")
        if silent:
            messages.append(f"devices without windows in the {settings.silent_after_hours} hour(s) through "
                            f"{hour_key(latest)}: {', '.join(silent)}")
        cursor = {"checked_hour": hour_key(latest), "silent": silent}
    elif cursor["silent"]:
        messages.append(f"still silent: {', '.join(cursor['silent'])}")
    return dg.SensorResult(
        dynamic_partitions_requests=partition_requests,
        asset_events=observations,
        cursor=json.dumps(cursor),
        skip_reason=None if partition_requests or observations else ("; ".join(messages) or "no new devices or sensors"),
    )
