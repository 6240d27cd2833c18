"""Declarative Automation: when each asset is materialized, as conditions on the assets.

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


def _lookback(settings: Settings) -> dg.AutomationCondition:
    return dg.AutomationCondition.in_latest_time_window(timedelta(hours=max(settings.rescoring_hours, 1)))


def _minute(value: int, variable: str) -> int:
    if not 0 <= value <= 59:
        raise ValueError(f"{variable}={value} must be a minute past the hour, 0 to 59")
    return value


def raw_readings_condition(settings: Settings) -> dg.AutomationCondition:
    """Missing hours of the look-back, at the first tick after each hour's lateness has passed."""
    _minute(settings.allowed_lateness_minutes, "BSCORE_ALLOWED_LATENESS_MINUTES")
    ready_tick = dg.AutomationCondition.cron_tick_passed(f"{settings.allowed_lateness_minutes} * * * *", "UTC")
    return (
        _lookback(settings)
        & dg.AutomationCondition.missing()
        & ready_tick.since_last_handled()
        & ~dg.AutomationCondition.in_progress()
    ).with_label("ready hour not recorded")


def _updated_since_handled(settings: Settings) -> dg.AutomationCondition:
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
        _lookback(settings)
        & (missing.with_label("missing, not failed") | upstream.with_label("upstream updated")
           | new_models.with_label("models changed since last requested"))
        & ~dg.AutomationCondition.any_deps_missing().ignore(MODELS)
        & ~dg.AutomationCondition.any_deps_in_progress()
        & ~dg.AutomationCondition.in_progress()
    )


def sensor_aggregates_condition(settings: Settings) -> dg.AutomationCondition:
    """An hour of the look-back whenever its raw readings were recorded again."""
    return _updated_since_handled(settings).with_label("raw readings recorded")


def sensor_predictions_condition(settings: Settings) -> dg.AutomationCondition:
    """Hours x sensors of the look-back when their aggregates or the models changed, unless an
    upstream blocking check failed."""
    some_model = dg.AutomationCondition.any_deps_match(~dg.AutomationCondition.missing()).allow(MODELS)
    return (
        _updated_since_handled(settings)
        & some_model.with_label("some device has a model")
        & dg.AutomationCondition.all_deps_blocking_checks_passed()
    ).with_label("aggregates or models changed")


def device_verdicts_condition(settings: Settings) -> dg.AutomationCondition:
    """Hours of the look-back whose predictions were materialized since the hour was last
    handled (or that have predictions and no verdicts yet, unless that failed), once no sensor of
    the hour is being scored or about to be. The predictions' checks do not hold the vote back:
    the verdicts describe the stored predictions, and matter most when their rates are high."""
    scored = dg.AutomationCondition.any_deps_match(~dg.AutomationCondition.missing())
    missing = dg.AutomationCondition.missing() & ~dg.AutomationCondition.execution_failed() & scored
    # Materialized, not merely requested in the same tick: the predictions' run (another
    # partitioning, so another run) must have finished before the hour is voted.
    updated = dg.AutomationCondition.any_deps_match(dg.AutomationCondition.newly_updated()).since_last_handled()
    return (
        _lookback(settings)
        & (missing.with_label("missing, not failed") | updated.with_label("predictions updated"))
        & ~dg.AutomationCondition.any_deps_match(dg.AutomationCondition.will_be_requested())
        & ~dg.AutomationCondition.any_deps_in_progress()
        & ~dg.AutomationCondition.in_progress()
    ).with_label("predictions materialized")


def device_models_condition(settings: Settings) -> dg.AutomationCondition:
    """Every registered device, once per tick of the retraining cron."""
    return (
        dg.AutomationCondition.cron_tick_passed(settings.retraining_cron, "UTC").since_last_handled()
        & ~dg.AutomationCondition.in_progress()
    ).with_label(f"retraining cron {settings.retraining_cron}")


CONDITIONS = {
    "raw_readings": raw_readings_condition,
    "sensor_aggregates": sensor_aggregates_condition,
    "sensor_predictions": sensor_predictions_condition,
    "device_verdicts": device_verdicts_condition,
    "device_models": device_models_condition,
}


def scoring_freshness_policy(settings: Settings) -> dg.FreshnessPolicy:
    """Each hour scored within ``BSCORE_SCORING_DEADLINE_MINUTES`` of its close."""
    _minute(settings.scoring_deadline_minutes, "BSCORE_SCORING_DEADLINE_MINUTES")
    return dg.FreshnessPolicy.cron(deadline_cron=f"{settings.scoring_deadline_minutes} * * * *",
                                   lower_bound_delta=timedelta(hours=1), timezone="UTC")


def with_automation(assets: list[dg.AssetsDefinition], settings: Settings) -> list[dg.AssetsDefinition]:
    """The assets with their automation conditions (and freshness) built from ``settings``."""

    def attach(spec: dg.AssetSpec) -> dg.AssetSpec:
        condition = CONDITIONS[spec.key.to_user_string()](settings)
        extra = {"freshness_policy": scoring_freshness_policy(settings)} \
            if spec.key.to_user_string() in ("sensor_aggregates", "sensor_predictions") else {}
        return spec.replace_attributes(automation_condition=condition, **extra)

    return [asset.map_asset_specs(attach) for asset in assets]


def automation_sensor() -> dg.AutomationConditionSensorDefinition:
    return dg.AutomationConditionSensorDefinition(
        AUTOMATION_SENSOR, target=dg.AssetSelection.all(), minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.STOPPED,
        description="Evaluates the assets' automation conditions: ingest, aggregate and score each hour, "
                    "retrain on the cron.",
    )
