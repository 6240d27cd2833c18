"""Freshness of the newest hour: is every sensor of the newest hour whose deadline has passed scored?

The asset's ``FreshnessPolicy`` looks at ``sensor_predictions``' latest materialization,
whatever its partition, so rescores of older hours (after each retrain, or late readings)
keep it fresh while the newest hour may never have been scored. The ``newest_hour_scored``
check looks at that hour's partitions instead: the newest hour ``H`` whose deadline (minute
``BSCORE_SCORING_DEADLINE_MINUTES`` past ``H + 1h``) has passed must have every registered
sensor's ``(H, sensor)`` partition materialized, or the check fails at ERROR naming the hour
and the sensors. ``newest_hour_freshness_sensor`` runs the check once per hour, as soon as
that hour's deadline has passed. Dagster also runs it with every run of ``sensor_predictions``;
there an overdue hour is a WARN, so that scoring older hours does not fail on it.
"""

from __future__ import annotations

import dagster as dg
import pandas as pd

from bscore_assets.hours import latest_materializations
from bscore_assets.partitions import hour_key, hour_sensor_key, sensor_partitions_def
from bscore_assets.settings import Settings
from scoring.time_units import HOUR

NEWEST_HOUR_CHECK = dg.AssetCheckKey(dg.AssetKey("sensor_predictions"), "newest_hour_scored")
FRESHNESS_SENSOR = "newest_hour_freshness_sensor"


def newest_due_hour(now: pd.Timestamp, deadline_minutes: int) -> pd.Timestamp:
    """The newest hour (its start, UTC) whose scoring deadline is at or before ``now``.

    >>> newest_due_hour(pd.Timestamp("2026-03-01T05:40"), 30)
    Timestamp('2026-03-01 04:00:00')
    """
    return (pd.Timestamp(now) - pd.Timedelta(minutes=deadline_minutes)).floor("h") - HOUR


def newest_hour_scored_result(instance: dg.DagsterInstance, now: pd.Timestamp, settings: Settings,
                              severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR) -> dg.AssetCheckResult:
    """Whether every registered sensor of the newest due hour is scored, as a check result
    (failing at ``severity``)."""
    hour = newest_due_hour(now, settings.scoring_deadline_minutes)
    deadline = hour + pd.Timedelta(hours=1, minutes=settings.scoring_deadline_minutes)
    sensors = sorted(instance.get_dynamic_partitions(sensor_partitions_def.name))
    meta = {"hour": hour_key(hour), "deadline": f"{deadline:%Y-%m-%dT%H:%M}", "sensors": len(sensors)}
    if hour < settings.start or not sensors:
        return dg.AssetCheckResult(check_name=NEWEST_HOUR_CHECK.name, passed=True, metadata=meta,
                                   description=f"nothing to score for {hour_key(hour)} (before BSCORE_START, "
                                               "or no sensor registered)")
    done = latest_materializations(instance, "sensor_predictions")
    unscored = [sensor for sensor in sensors if hour_sensor_key(hour, sensor) not in done]
    meta["unscored_sensors"] = ", ".join(unscored[:50]) + (f", ... ({len(unscored)} in all)" if len(unscored) > 50
                                                           else "")
    if not unscored:
        return dg.AssetCheckResult(check_name=NEWEST_HOUR_CHECK.name, passed=True, metadata=meta,
                                   description=f"hour {hour_key(hour)}: all {len(sensors)} sensor(s) scored")
    return dg.AssetCheckResult(
        check_name=NEWEST_HOUR_CHECK.name, passed=False, severity=severity, metadata=meta,
        description=(f"hour {hour_key(hour)} is overdue: {len(unscored)} of {len(sensors)} sensor(s) not scored by "
                     f"its deadline {deadline:%Y-%m-%dT%H:%M} (BSCORE_SCORING_DEADLINE_MINUTES="
                     f"{settings.scoring_deadline_minutes}): {meta['unscored_sensors']}"))


def build_newest_hour_check(settings: Settings) -> dg.AssetChecksDefinition:
    @dg.asset_check(asset="sensor_predictions", name=NEWEST_HOUR_CHECK.name,
                    description="Every sensor of the newest hour whose deadline passed is scored "
                                "(BSCORE_SCORING_DEADLINE_MINUTES); per hour, unlike the asset's freshness policy.")
    def newest_hour_scored(context):
        # Dagster runs an asset's checks with every run of it: a run scoring older hours (a
        # backfill, a rescore) reports an overdue newest hour as a warning, so that it does not
        # fail for what it was not asked to do; the check's own run reports it as an error.
        alongside = dg.AssetKey("sensor_predictions") in context.job_def.asset_layer.selected_asset_keys
        severity = dg.AssetCheckSeverity.WARN if alongside else dg.AssetCheckSeverity.ERROR
        return newest_hour_scored_result(context.instance, pd.Timestamp.now("UTC").tz_localize(None), settings,
                                         severity)

    return newest_hour_scored


def build_newest_hour_freshness_sensor(settings: Settings) -> dg.SensorDefinition:
    @dg.sensor(name=FRESHNESS_SENSOR, minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.STOPPED,
               target=dg.AssetSelection.checks(NEWEST_HOUR_CHECK))
    def newest_hour_freshness_sensor(context: dg.SensorEvaluationContext):
        """Run ``newest_hour_scored`` once for each hour, when its scoring deadline has passed."""
        hour = newest_due_hour(pd.Timestamp.now("UTC").tz_localize(None), settings.scoring_deadline_minutes)
        if hour < settings.start:
            return dg.SkipReason(f"no hour since BSCORE_START is due yet ({hour_key(hour)})")
        return [dg.RunRequest(run_key=f"newest-hour-{hour_key(hour)}", asset_check_keys=[NEWEST_HOUR_CHECK],
                              tags={"bscore/hour": hour_key(hour)})]

    return newest_hour_freshness_sensor
