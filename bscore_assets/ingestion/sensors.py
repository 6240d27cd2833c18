"""Sensors of the ingestion domain. They only observe and request: every drain and write
happens inside a run.

- ``late_readings_sensor`` compares each recent hour's raw content (the names of its parts,
  one listing) with what ``raw_readings`` recorded, and requests the hours that changed since
  (late readings a later run drained); automation then re-aggregates and re-scores them.
- ``fleet_partitions_sensor`` keeps the fleet's dynamic partitions in step with the data and
  reports devices that stopped sending.
"""

from __future__ import annotations

import json

import dagster as dg
import pandas as pd

from bscore_assets.hours import aggregated_hours, hour_blocks, latest_materializations, latest_partition_metadata
from bscore_assets.ingestion.fleet import fleet_partition_requests, silent_devices
from bscore_assets.partitions import device_partitions_def, hour_key, hour_of_key
from bscore_assets.runs import hour_range_tags
from bscore_assets.settings import Settings
from bscore_assets.storage import raw_parts, raw_version
from resources.blob import BlobStore
from resources.sql import SqlStore


def changed_raw_hours(instance: dg.DagsterInstance, blob: BlobStore, hours: list[pd.Timestamp]) -> dict[pd.Timestamp, str]:
    """Recorded hours among ``hours`` whose raw parts differ from what their latest record says,
    with their raw content version now."""
    recorded = latest_partition_metadata(instance, "raw_readings", [hour_key(h) for h in hours])
    changed = {}
    for key, meta in sorted(recorded.items()):
        version = raw_version(raw_parts(blob, hour_of_key(key)))
        if meta.get("raw_version") != version:
            changed[hour_of_key(key)] = version
    return changed


def build_late_readings_sensor(settings: Settings) -> dg.SensorDefinition:
    @dg.sensor(asset_selection=["raw_readings"], minimum_interval_seconds=60,
               default_status=dg.DefaultSensorStatus.STOPPED)
    def late_readings_sensor(context: dg.SensorEvaluationContext, blob: BlobStore):
        """Request ``raw_readings`` again for recent hours whose raw content changed after they were
        recorded (readings that arrived late), so they are re-aggregated and re-scored."""
        recorded = sorted(hour_of_key(key) for key in latest_materializations(context.instance, "raw_readings"))
        recent = [h for h in recorded if h > recorded[-1] - pd.Timedelta(hours=settings.rescoring_hours)] \
            if recorded else []
        changed = changed_raw_hours(context.instance, blob, recent)
        if not changed:
            return dg.SkipReason(f"none of the {len(recent)} most recently recorded hour(s) changed since")
        context.log.info(f"raw readings changed after they were recorded: {', '.join(map(hour_key, changed))}")
        # One request per content version: the same change is never requested twice.
        return [dg.RunRequest(run_key="late-" + "-".join(f"{hour_key(h)}@{v}" for h, v in changed.items()
                                                          if first <= h <= last),
                              tags={**hour_range_tags(first, last), "bscore/reason": "late readings"})
                for first, last in hour_blocks(changed)]

    return late_readings_sensor


def _load(cursor: str | None, default: dict) -> dict:
    return {**default, **json.loads(cursor)} if cursor else dict(default)


def build_fleet_partitions_sensor(settings: Settings) -> dg.SensorDefinition:
    @dg.sensor(minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.STOPPED)
    def fleet_partitions_sensor(context: dg.SensorEvaluationContext, sql: SqlStore):
        """Register devices and sensors that appear in the aggregates as dynamic partitions, and
        report registered devices that stopped sending (no windows in the last hours).

        Silence is checked once per newly aggregated hour (the cursor remembers the hour and the
        silent devices); a device going silent or coming back is recorded as an observation of
        its ``device_models`` partition, so the UI shows it on the device.
        """
        cursor = _load(context.cursor, {"checked_hour": None, "silent": []})
        held: dict[str, str] = {}
        partition_requests = fleet_partition_requests(context.instance, sql, settings, held)
        added = {r.partitions_def_name: list(r.partition_keys) for r in partition_requests}
        hours = aggregated_hours(context.instance)
        observations, messages = [], [f"new {name}: {', '.join(keys)}" for name, keys in added.items()]
        if held:  # junk-sensor guard: say which ids it keeps from becoming partitions
            context.log.warning(f"{len(held)} sensor id(s) held back from partitions: " + "; ".join(held.values()))
            messages.append(f"sensor ids held back: {', '.join(list(held)[:20])}"
                            + (f", ... ({len(held)} in all)" if len(held) > 20 else ""))
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

    return fleet_partitions_sensor
