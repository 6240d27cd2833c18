"""Alert sensors: they post to the ``alerts`` channel (Teams or a JSON webhook) and request no run.

- ``alert_on_run_failure``: a run failed (Dagster's run-failure sensor; its cursor is Dagster's).
- ``alert_on_check_failure``: an asset check failed at ERROR (check evaluations read from the
  instance after the storage id in the cursor).
- ``alert_on_late_hour``: the newest hour whose deadline (``BSCORE_SCORING_DEADLINE_MINUTES``
  past its close) has passed is missing some sensor's predictions.
- ``alert_on_silent_devices``: registered devices without windows in the last
  ``BSCORE_SILENT_AFTER_HOURS`` hours; a device is reported once until it sends again.
- ``alert_daily_digest``: once a UTC day, after ``BSCORE_ALERT_DIGEST_HOUR``, the previous day.

Every alert is sent once: the cursor moves past a cause only after its alert was delivered, so
a webhook that is down makes the tick fail and the alert is sent on a later tick instead.
"""

from __future__ import annotations

import json

import dagster as dg

from bscore_assets.alerts.causes import (
    DAY,
    current_silent_devices,
    daily_digest,
    failed_error_checks,
    late_hour_alert,
    latest_event_id,
    newest_due_hour,
    run_failure_alert,
    silent_devices_alert,
    utc_now,
)
from bscore_assets.partitions import hour_key
from bscore_assets.settings import Settings
from resources.alerts import AlertChannel
from resources.sql import SqlStore

RUNNING = dg.DefaultSensorStatus.RUNNING  # registered only when a webhook is configured: on by default


def _cursor(context: dg.SensorEvaluationContext, default: dict) -> dict:
    return {**default, **json.loads(context.cursor)} if context.cursor else dict(default)


# Every code location, so that runs the CLI executes in-process (no code location) are seen too.
@dg.run_failure_sensor(default_status=RUNNING, monitor_all_code_locations=True,
                       description="Post an alert when a run fails.")
def alert_on_run_failure(context: dg.RunFailureSensorContext, alerts: AlertChannel):
    alerts.post(run_failure_alert(context.dagster_run, context.failure_event.message or ""))


@dg.sensor(minimum_interval_seconds=60, default_status=RUNNING,
           description="Post an alert for each asset check that fails at ERROR severity.")
def alert_on_check_failure(context: dg.SensorEvaluationContext, alerts: AlertChannel):
    cursor = _cursor(context, {"after_id": None})
    if cursor["after_id"] is None:  # alerts start from now, not from the instance's history
        context.update_cursor(json.dumps({"after_id": latest_event_id(context.instance)}))
        return dg.SkipReason("started: check failures from now on are alerted")
    found, last = failed_error_checks(context.instance, cursor["after_id"])
    for alert in found:
        alerts.post(alert)
    context.update_cursor(json.dumps({"after_id": last}))
    return dg.SkipReason(f"{len(found)} check failure alert(s) sent")


def build_alert_sensors(settings: Settings) -> list[dg.SensorDefinition]:
    """The alert sensors, with the thresholds of ``settings``."""

    @dg.sensor(minimum_interval_seconds=300, default_status=RUNNING,
               description="Post an alert when the newest due hour is not scored by its deadline.")
    def alert_on_late_hour(context: dg.SensorEvaluationContext, alerts: AlertChannel):
        cursor = _cursor(context, {"alerted_hour": None})
        hour = newest_due_hour(utc_now(), settings.scoring_deadline_minutes)
        if cursor["alerted_hour"] == hour_key(hour):
            return dg.SkipReason(f"hour {hour_key(hour)} already alerted")
        alert = late_hour_alert(context.instance, hour, settings)
        if alert is None:
            return dg.SkipReason(f"hour {hour_key(hour)} is scored (or before BSCORE_START)")
        alerts.post(alert)
        context.update_cursor(json.dumps({"alerted_hour": hour_key(hour)}))
        return dg.SkipReason(f"hour {hour_key(hour)} late: alert sent")

    @dg.sensor(minimum_interval_seconds=300, default_status=RUNNING,
               description="Post an alert when registered devices stop sending.")
    def alert_on_silent_devices(context: dg.SensorEvaluationContext, alerts: AlertChannel, sql: SqlStore):
        cursor = _cursor(context, {"silent": []})
        through, silent = current_silent_devices(context.instance, sql, settings)
        new = [device for device in silent if device not in set(cursor["silent"])]
        if new:
            alerts.post(silent_devices_alert(new, through, settings))
        context.update_cursor(json.dumps({"silent": silent}))  # a device that sends again leaves the list
        return dg.SkipReason(f"{len(new)} newly silent device(s) alerted, {len(silent)} silent")

    @dg.sensor(minimum_interval_seconds=600, default_status=RUNNING,
               description="Post a summary of the previous UTC day once a day.")
    def alert_daily_digest(context: dg.SensorEvaluationContext, alerts: AlertChannel, sql: SqlStore):
        cursor = _cursor(context, {"last_day": None})
        now = utc_now()
        day = now.floor("D") - DAY
        if now.hour < settings.alert_digest_hour or cursor["last_day"] == f"{day:%Y-%m-%d}":
            return dg.SkipReason(f"digest for {day:%Y-%m-%d} sent or not due until {settings.alert_digest_hour}:00 UTC")
        alerts.post(daily_digest(context.instance, sql, settings, day))
        context.update_cursor(json.dumps({"last_day": f"{day:%Y-%m-%d}"}))
        return dg.SkipReason(f"digest for {day:%Y-%m-%d} sent")

    return [alert_on_run_failure, alert_on_check_failure, alert_on_late_hour, alert_on_silent_devices,
            alert_daily_digest]


def alert_resources(settings: Settings) -> dict:
    """``{"alerts": AlertChannel}`` for the configured webhook (Teams first), or nothing."""
    if settings.teams_webhook_from_env:
        return {"alerts": AlertChannel(kind="teams", url=dg.EnvVar("BSCORE_TEAMS_WEBHOOK_URL"))}
    if settings.alert_webhook_from_env:
        return {"alerts": AlertChannel(kind="webhook", url=dg.EnvVar("BSCORE_ALERT_WEBHOOK_URL"))}
    return {}


def alert_objects(settings: Settings) -> tuple[list[dg.SensorDefinition], dict]:
    """The alert sensors and their channel when a webhook is configured; none otherwise."""
    channel = alert_resources(settings)
    return (build_alert_sensors(settings), channel) if channel else ([], {})
