"""Declarative Automation: what every asset's condition is built from, and the sensor that
evaluates them.

Each asset's condition lives beside the asset, in its domain (``ingestion.assets``,
``aggregation.assets``, ``models.assets``, ``predictions.assets``, ``verdicts.assets``), built
from the settings its domain's ``defs(settings)`` is given:

- ``raw_readings``: every hour that has closed, once its allowed lateness has passed (a cron
  tick at that minute past the hour), for the hours of the look-back that are missing; its
  run drains the event source. Hours whose raw data changed after they were recorded (late
  readings) are requested by ``late_readings_sensor``, which only observes.
- ``sensor_aggregates``: an hour once its raw readings are (re)recorded.
- ``sensor_predictions``: an hour x sensor once its aggregates are there and their blocking
  checks passed and some device has a model, and again when device models change (the
  look-back's hours are rescored). A device without a model does not hold the others back.
- ``device_verdicts``: an hour once its predictions are (re)materialized, none of its sensors
  still being scored.
- ``device_models``: every device on the retraining cron; the champion/challenger gate in
  the asset decides what becomes current.

One ``AutomationConditionSensorDefinition`` evaluates them (off until an operator turns it on).
"""

from __future__ import annotations

from datetime import timedelta

import dagster as dg

from bscore_assets.settings import Settings

AUTOMATION_SENSOR = "bscore_automation_sensor"
MODELS = dg.AssetSelection.assets("device_models")


def lookback(settings: Settings) -> dg.AutomationCondition:
    """The partitions of the last ``BSCORE_RESCORING_HOURS`` hours (at least one)."""
    return dg.AutomationCondition.in_latest_time_window(timedelta(hours=max(settings.rescoring_hours, 1)))


def minute_past_the_hour(value: int, variable: str) -> int:
    if not 0 <= value <= 59:
        raise ValueError(f"{variable}={value} must be a minute past the hour, 0 to 59")
    return value


def updated_since_handled(settings: Settings) -> dg.AutomationCondition:
    """Partitions of the look-back that are missing (and did not fail), or whose upstreams were
    updated since, once the upstreams other than the models are there and none is in progress."""
    # Missing partitions are requested until one run of them fails (no retry loop on a failure
    # that would repeat); updated upstreams request them again. A device without a model must
    # not hold back the fleet's scoring: only the hour's own upstream (its aggregates) has to
    # be there; devices' models are judged by the checks.
    missing = dg.AutomationCondition.missing() & ~dg.AutomationCondition.execution_failed()
    upstream = dg.AutomationCondition.any_deps_updated().ignore(MODELS).since_last_handled()
    # New models are handled only by a request of ours: a partition that finished scoring just
    # after the models changed was scored with the old ones, and must not count as handled.
    new_models = dg.AutomationCondition.any_deps_updated().allow(MODELS).since(
        dg.AutomationCondition.newly_requested() | dg.AutomationCondition.initial_evaluation())
    return (
        lookback(settings)
        & (missing.with_label("missing, not failed") | upstream.with_label("upstream updated")
           | new_models.with_label("models changed since last requested"))
        & ~dg.AutomationCondition.any_deps_missing().ignore(MODELS)
        & ~dg.AutomationCondition.any_deps_in_progress()
        & ~dg.AutomationCondition.in_progress()
    )


def scoring_freshness_policy(settings: Settings) -> dg.FreshnessPolicy:
    """Each hour scored within ``BSCORE_SCORING_DEADLINE_MINUTES`` of its close."""
    minute_past_the_hour(settings.scoring_deadline_minutes, "BSCORE_SCORING_DEADLINE_MINUTES")
    return dg.FreshnessPolicy.cron(deadline_cron=f"{settings.scoring_deadline_minutes} * * * *",
                                   lower_bound_delta=timedelta(hours=1), timezone="UTC")


def automation_sensor() -> dg.AutomationConditionSensorDefinition:
    return dg.AutomationConditionSensorDefinition(
        AUTOMATION_SENSOR, target=dg.AssetSelection.all(), minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.STOPPED,
        description="Evaluates the assets' automation conditions: ingest, aggregate and score each hour, "
                    "retrain on the cron.",
    )
