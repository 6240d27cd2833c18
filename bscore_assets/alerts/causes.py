"""What is worth an alert, read from the Dagster instance (and the aggregates for silence).

Each function finds one cause and returns :class:`resources.alerts.Alert` values naming what
it is about; the sensors (``bscore_assets.alerts.sensors``) decide when to look and remember
what was sent.
"""

from __future__ import annotations

import dagster as dg
import pandas as pd

from bscore_assets.hours import aggregated_hours, latest_partition_metadata
from bscore_assets.ingestion.fleet import silent_devices
from bscore_assets.partitions import (
    device_partitions_def,
    hour_key,
    hour_sensor_key,
    hour_sensor_of_key,
    sensor_partitions_def,
)
from bscore_assets.settings import Settings
from resources.alerts import Alert
from resources.sql import SqlStore
from scoring.time_units import HOUR

DAY = pd.Timedelta(days=1)
PREDICTIONS = dg.AssetKey("sensor_predictions")
LISTED = 20  # names listed in one alert line; the rest are counted


def _listing(names) -> str:
    names = list(names)
    return ", ".join(names[:LISTED]) + (f" and {len(names) - LISTED} more" if len(names) > LISTED else "")


def utc_now() -> pd.Timestamp:
    return pd.Timestamp.now("UTC").tz_localize(None)


def run_failure_alert(run: dg.DagsterRun, message: str) -> Alert:
    partitions = run.tags.get("dagster/asset_partition_range_start"), run.tags.get("dagster/asset_partition_range_end")
    lines = [f"job {run.job_name}, run {run.run_id}", message.strip().splitlines()[0][:500] if message else ""]
    if partitions[0]:
        lines.append(f"partitions {partitions[0]} .. {partitions[1]}")
    return Alert("run_failure", f"bscore: run of {run.job_name} failed", [line for line in lines if line],
                 {"run_id": run.run_id, "job": run.job_name})


def latest_event_id(instance: dg.DagsterInstance) -> int:
    return instance.event_log_storage.get_maximum_record_id() or 0


def failed_error_checks(instance: dg.DagsterInstance, after_id: int, limit: int = 1000) -> tuple[list[Alert], int]:
    """One alert per (run, check) that failed at ERROR severity in the events after storage id
    ``after_id`` (a run's partitions together), and the last storage id read."""
    records = instance.get_event_records(
        dg.EventRecordsFilter(dg.DagsterEventType.ASSET_CHECK_EVALUATION, after_cursor=after_id),
        limit=limit, ascending=True)
    failed: dict[tuple[str, str], list] = {}
    last = after_id
    for record in records:
        last = max(last, record.storage_id)
        evaluation = record.event_log_entry.dagster_event.event_specific_data
        if evaluation.passed or evaluation.severity != dg.AssetCheckSeverity.ERROR:
            continue
        check = f"{evaluation.asset_key.to_user_string()}.{evaluation.check_name}"
        failed.setdefault((record.run_id, check), []).append(evaluation)
    alerts = []
    for (run_id, check), evaluations in failed.items():
        partitions = sorted({e.partition for e in evaluations if e.partition})
        lines = [f"check {check} failed at ERROR in run {run_id}"]
        if partitions:
            lines.append(f"partitions: {_listing(partitions)}")
        if evaluations[-1].description:
            lines.append(evaluations[-1].description)
        alerts.append(Alert("check_failure", f"bscore: check {check} failed", lines,
                            {"check": check, "run_id": run_id, "partitions": partitions}))
    return alerts, last


def materialization_times(instance: dg.DagsterInstance, keys: list[str]) -> dict[str, list[float]]:
    """Timestamps of the ``sensor_predictions`` materializations of each partition in ``keys``, oldest first."""
    times: dict[str, list[float]] = {key: [] for key in keys}
    cursor = None
    while keys:
        result = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=PREDICTIONS, asset_partitions=keys),
                                                 limit=1000, cursor=cursor, ascending=True)
        for record in result.records:
            times[record.asset_materialization.partition].append(record.timestamp)
        if not result.has_more:
            break
        cursor = result.cursor
    return times


def newest_due_hour(now: pd.Timestamp, deadline_minutes: int) -> pd.Timestamp:
    """The newest closed hour whose scoring deadline (minutes past its close) has passed at ``now``."""
    return (now - pd.Timedelta(minutes=deadline_minutes)).floor("h") - HOUR


def unscored_sensors(instance: dg.DagsterInstance, hour: pd.Timestamp, by: pd.Timestamp | None = None) -> list[str]:
    """Registered sensors whose ``sensor_predictions`` partition of ``hour`` was not materialized
    (by the time ``by``, when given)."""
    sensors = sorted(instance.get_dynamic_partitions(sensor_partitions_def.name))
    keys = {hour_sensor_key(hour, sensor): sensor for sensor in sensors}
    times = materialization_times(instance, list(keys))
    limit = None if by is None else by.tz_localize("UTC").timestamp()
    return [sensor for key, sensor in keys.items() if not [t for t in times[key] if limit is None or t <= limit]]


def late_hour_alert(instance: dg.DagsterInstance, hour: pd.Timestamp, settings: Settings) -> Alert | None:
    """An alert when some registered sensor's predictions of ``hour`` are not materialized."""
    if hour < settings.start:
        return None
    missing = unscored_sensors(instance, hour)
    if not missing:
        return None
    deadline = hour + HOUR + pd.Timedelta(minutes=settings.scoring_deadline_minutes)
    return Alert("late_hour", f"bscore: hour {hour_key(hour)} not scored by its deadline",
                 [f"hour {hour_key(hour)} was due by {deadline:%Y-%m-%d %H:%M} UTC "
                  f"(BSCORE_SCORING_DEADLINE_MINUTES={settings.scoring_deadline_minutes})",
                  f"sensors without predictions: {_listing(missing)}"],
                 {"hour": hour_key(hour), "sensors": missing})


def current_silent_devices(instance: dg.DagsterInstance, sql: SqlStore, settings: Settings
                           ) -> tuple[pd.Timestamp | None, list[str]]:
    """The latest aggregated hour and the registered devices without windows in the
    ``BSCORE_SILENT_AFTER_HOURS`` hours through it."""
    hours = aggregated_hours(instance)
    if not hours:
        return None, []
    latest = max(hours)
    devices = list(instance.get_dynamic_partitions(device_partitions_def.name))
    return latest, silent_devices(sql, devices, latest, settings.silent_after_hours)


def silent_devices_alert(devices: list[str], through: pd.Timestamp, settings: Settings) -> Alert:
    return Alert("silent_devices", f"bscore: {len(devices)} device(s) stopped sending",
                 [f"no windows in the {settings.silent_after_hours} hour(s) through {hour_key(through)}: "
                  f"{_listing(devices)}"],
                 {"devices": devices, "through_hour": hour_key(through)})


def daily_digest(instance: dg.DagsterInstance, sql: SqlStore, settings: Settings, day: pd.Timestamp,
                 now: pd.Timestamp | None = None) -> Alert:
    """A summary of the UTC day ``day``: runs failed, checks failed at ERROR, hours (closed by
    ``now``) scored late or not at all, devices silent now, and anomalies flagged in the day's hours."""
    now = utc_now() if now is None else now
    start, end = day.floor("D"), day.floor("D") + DAY
    start_ts, end_ts = start.tz_localize("UTC"), end.tz_localize("UTC")
    failed_runs = instance.get_run_records(dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE],
                                                         updated_after=start_ts.to_pydatetime(),
                                                         updated_before=end_ts.to_pydatetime()))
    checks = instance.get_event_records(
        dg.EventRecordsFilter(dg.DagsterEventType.ASSET_CHECK_EVALUATION, after_timestamp=start_ts.timestamp(),
                              before_timestamp=end_ts.timestamp()), limit=100_000)
    failed_checks = [r for r in checks if not r.event_log_entry.dagster_event.event_specific_data.passed
                     and r.event_log_entry.dagster_event.event_specific_data.severity == dg.AssetCheckSeverity.ERROR]
    hours = [h for h in pd.date_range(start, end - HOUR, freq="h") if h >= settings.start and h + HOUR <= now]
    late = [hour_key(h) for h in hours
            if unscored_sensors(instance, h, by=h + HOUR + pd.Timedelta(minutes=settings.scoring_deadline_minutes))]
    sensors = sorted(instance.get_dynamic_partitions(sensor_partitions_def.name))
    keys = [hour_sensor_key(h, s) for h in hours for s in sensors]
    anomalies = {s: 0 for s in sensors}
    for key, meta in latest_partition_metadata(instance, "sensor_predictions", keys).items():
        _, sensor = hour_sensor_of_key(key)
        if isinstance(meta.get("anomalies"), (int, float)):
            anomalies[sensor] = anomalies.get(sensor, 0) + int(meta["anomalies"])
    through, silent = current_silent_devices(instance, sql, settings)
    lines = [
        f"runs failed: {len(failed_runs)}" + (f" ({_listing(r.dagster_run.run_id for r in failed_runs)})"
                                              if failed_runs else ""),
        f"checks failed at ERROR: {len(failed_checks)}",
        f"hours late or unscored: {len(late)}" + (f" ({_listing(late)})" if late else ""),
        f"silent devices: {len(silent)}" + (f" ({_listing(silent)})" if silent else ""),
        f"anomalies flagged: {sum(anomalies.values())}"
        + (" (" + ", ".join(f"{s}: {n}" for s, n in anomalies.items() if n) + ")" if any(anomalies.values()) else ""),
    ]
    return Alert("digest", f"bscore: daily digest for {start:%Y-%m-%d} (UTC)", lines,
                 {"day": f"{start:%Y-%m-%d}", "runs_failed": len(failed_runs), "checks_failed": len(failed_checks),
                  "late_hours": late, "silent_devices": silent, "anomalies": anomalies,
                  "silent_through_hour": hour_key(through) if through is not None else None})
