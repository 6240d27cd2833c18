"""``device_models``: one bundle per device, a detector per sensor, versioned in blob ``models/``.

Retraining goes through the gate (``scoring.champion``): the challenger learns the training
window less the hours the current model flags over the WARN rate, and each sensor's model is
judged on the hold-out hour (the window's last hour) against the WARN rate; a sensor over it
falls back to the robust kind, or is refused by name (the device keeps its current model for
it). A device whose training fails is refused by name and the others go on. A promoted
version becomes current only once the materialization that records it is stored.
"""

import dagster as dg
import numpy as np
import pandas as pd

from bscore_assets.models.outcome import TrainingOutcome, gate_passed
from bscore_assets.partitions import device_partitions_def
from bscore_assets.retries import retry_on_outage
from bscore_assets.settings import PipelineSettings, Settings
from bscore_assets.step_guard import guard_step
from resources.blob import BlobStore
from resources.sql import SqlStore
from scoring.champion import gate, windows_champion_accepts
from scoring.detectors import FitOptions, SvmParams, kind_of
from scoring.detectors.multivariate import device_matrix
from scoring.model_format import ModelBundle, versioned_bundle
from scoring.model_store import load_current_bundles_or_refusals, make_current, save_bundle
from scoring.selection import choose_kinds
from scoring.training import fit_series, train_device_bundle, window_extremes_columns
from scoring.time_units import HOUR

TRAINING_ERRORS = (ValueError, ArithmeticError, np.linalg.LinAlgError)


class TrainingConfig(dg.Config):
    """The training window (hours, both ends included), the detector kind and its budget.

    Without a window, the last ``training_hours`` hours that have windows are used. Without a
    kind or budget, the pipeline's (``BSCORE_DETECTOR``, ``BSCORE_FALSE_ALARM_RATE``).
    ``select`` picks each sensor's kind by the recall of anomalies planted into its own
    training windows (``scoring.selection``).
    """

    from_hour: str | None = None
    to_hour: str | None = None
    kind: str | None = None
    false_alarm_rate: float | None = None
    select: bool = False
    nu: float = 0.0001
    kernel: str = "rbf"
    gamma: float = 0.01
    min_samples: int = 10


def training_window(config: TrainingConfig, sql: SqlStore, hours: int) -> tuple[pd.Timestamp, pd.Timestamp]:
    """``(start, end)`` of the hours to train on."""
    if config.to_hour:
        end = pd.Timestamp(config.to_hour).floor("h") + HOUR
    else:
        latest = sql.latest_window()
        end = latest.ceil("h") if latest is not None else None
    if config.from_hour:
        start = pd.Timestamp(config.from_hour).floor("h")
    else:
        start = end - pd.Timedelta(hours=hours) if end is not None else None
    if start is None or end is None or start >= end:
        raise ValueError(f"training window from_hour={config.from_hour!r} to_hour={config.to_hour!r} is empty "
                         "or there are no aggregates to train on")
    return start, end


def train_device(device: str, windows: pd.DataFrame, champion, holdout_start: pd.Timestamp,
                 options: FitOptions, kind: str, select: bool, pipeline: PipelineSettings) -> TrainingOutcome:
    """Train one device's challenger and judge it per sensor on the hold-out hour.

    The challenger learns the hours before the hold-out hour (all of a one-hour window), less
    every hour the current model flags over the WARN rate. A sensor over the WARN rate on the
    hold-out falls back to the robust kind when it was another; if it is still over, it is
    refused: the device keeps its current model for that sensor, or has none.
    """
    holdout = windows[windows["ts"] > holdout_start]
    training = windows[windows["ts"] <= holdout_start]
    if training.empty:  # a one-hour window: train and judge on it
        training = windows
    selection = windows_champion_accepts(training, champion, pipeline.anomaly_rate_warn)
    outcome = TrainingOutcome(windows_trained=len(selection.windows), windows_excluded=selection.excluded_windows,
                              hours_excluded=[f"{h:%Y-%m-%dT%H}" for h in selection.excluded_hours])
    try:
        choices = choose_kinds(selection.windows, options) if select else {}
        outcome.selected = {sensor: choice.describe() for sensor, choice in choices.items()}
        bundle, outcome.sensors_without_model = train_device_bundle(
            device, selection.windows, options, kind, {sensor: choice.kind for sensor, choice in choices.items()})
        decision = gate(bundle, holdout, pipeline.anomaly_rate_warn)
        models = dict(bundle.models)
        for sensor in list(decision.over):
            if kind_of(models[sensor]).name == "robust":
                continue
            rows = selection.windows[selection.windows["sensor"].astype(str) == sensor]
            models[sensor] = fit_series(rows["value"].to_numpy(), "robust", options, rows["ts"].min(), rows["ts"].max(),
                                        **window_extremes_columns(rows))
            outcome.fell_back[sensor] = f"{kind_of(bundle.models[sensor]).name} flagged {decision.over[sensor]:.2%}"
        if outcome.fell_back:
            decision = gate(ModelBundle(device, bundle.version, models), holdout, pipeline.anomaly_rate_warn)
    except TRAINING_ERRORS as exc:
        outcome.status, outcome.reason = "refused", f"training failed: {type(exc).__name__}: {str(exc)[:300]}"
        return outcome
    outcome.holdout_rates = decision.rates
    for sensor, rate in decision.over.items():
        outcome.sensors_refused[sensor] = f"flags {rate:.2%} of the hold-out hour, over the WARN rate " \
                                          f"{pipeline.anomaly_rate_warn:.2%}"
        models.pop(sensor)
        if champion is not None and sensor in champion.models:
            models[sensor] = champion.models[sensor]
            outcome.sensors_kept[sensor] = champion.version
    outcome.constant_sensors = sorted(s for s, m in models.items() if getattr(m, "rule", None) == "constant")
    trained = set(models) - set(outcome.sensors_kept)
    if not trained:
        outcome.status = "no model"
        outcome.reason = "no sensor trained" + (f" ({decision.describe()})" if decision.over else "")
        return outcome
    device_model = judge_device_model(bundle, holdout, pipeline.device_anomaly_rate_warn, outcome)
    outcome.bundle = versioned_bundle(device, models, {**bundle.metadata, "holdout_rates": decision.rates,
                                                       "sensors_kept": outcome.sensors_kept,
                                                       "device_model_holdout_rate": outcome.device_model_holdout_rate,
                                                       "device_model_refused": outcome.device_model_refused},
                                      device_model=device_model)
    outcome.status = "promoted"
    outcome.reason = outcome.story(len(trained), pipeline.anomaly_rate_warn)
    return outcome


def judge_device_model(bundle: ModelBundle, holdout: pd.DataFrame, limit: float, outcome: TrainingOutcome):
    """The challenger's device model if it flags at most ``limit`` (the device WARN rate) of the
    hold-out device windows, else None; ``outcome`` records its rate, or why there is none."""
    model = bundle.device_model
    if model is None:
        outcome.device_model_refused = bundle.metadata.get("device_model_refused", "not fitted")
        return None
    outcome.device_model_dropped = list(model.dropped)
    _, x = device_matrix(holdout.assign(sensor=holdout["sensor"].astype(str)), model.sensors)
    x = x[~np.isnan(x).all(axis=1)]
    if not len(x):
        return model
    outcome.device_model_holdout_rate = rate = float(model.score(x)[1].mean())
    if rate > limit:
        outcome.device_model_refused = f"flags {rate:.2%} of the hold-out device windows, over the device WARN " \
                                       f"rate {limit:.2%}"
        return None
    return model


def device_models_condition(settings: Settings) -> dg.AutomationCondition:
    """Every registered device, once per tick of the retraining cron."""
    return (
        dg.AutomationCondition.cron_tick_passed(settings.retraining_cron, "UTC").since_last_handled()
        & ~dg.AutomationCondition.in_progress()
    ).with_label(f"retraining cron {settings.retraining_cron}")


def device_models_asset(settings: Settings) -> dg.AssetsDefinition:
    """``device_models``, one partition per registered device, retrained on ``BSCORE_RETRAINING_CRON``."""
    return dg.asset(
        name="device_models",
        partitions_def=device_partitions_def,
        automation_condition=device_models_condition(settings),
        backfill_policy=dg.BackfillPolicy.single_run(),
        deps=[dg.AssetDep("sensor_aggregates", partition_mapping=dg.AllPartitionMapping())],
        check_specs=[
            dg.AssetCheckSpec("every_sensor_has_model", asset="device_models",
                              description="Every sensor with training windows got a model; no device's training failed."),
            dg.AssetCheckSpec("challenger_gate", asset="device_models",
                              description="Every sensor's new model flags at most the WARN rate of the hold-out hour, and every "
                                          "device model at most the device WARN rate; the sensors and device "
                                          "models refused, fallen back to the robust kind or constant are named."),
        ],
        group_name="models",
        kinds={"scikit-learn"},
        description="Per-device bundle of one detector per sensor (robust by default; thresholds calibrated to the "
                    "false-alarm budget on each sensor's training windows), versioned in blob models/; retrained "
                    "behind a per-sensor hold-out gate.",
    )(device_models)


def device_models(context: dg.AssetExecutionContext, config: TrainingConfig, sql: SqlStore, blob: BlobStore,
                  pipeline: PipelineSettings):
    guard_step()
    with retry_on_outage(context):
        start, end = training_window(config, sql, pipeline.training_hours)
        holdout_start = end - HOUR
        options = FitOptions(false_alarm_rate=config.false_alarm_rate or pipeline.false_alarm_rate,
                             min_samples=config.min_samples,
                             svm=SvmParams(nu=config.nu, kernel=config.kernel, gamma=config.gamma,
                                           min_samples=config.min_samples))
        kind = config.kind or pipeline.detector
        devices = list(context.partition_keys)
        windows = sql.read_sensor_values(start, end, devices=devices)
        champions, unreadable = load_current_bundles_or_refusals(blob, devices)
        outcomes: dict[str, TrainingOutcome] = {}
        for number, (device, rows) in enumerate(windows.groupby("device", sort=True), start=1):
            outcome = outcomes[device] = train_device(device, rows, champions.get(device), holdout_start, options,
                                                      kind, config.select, pipeline)
            if outcome.bundle is not None:
                save_bundle(blob, outcome.bundle, make_current=False)
            context.log.info(f"device {device}: {outcome.status} — {outcome.reason} "
                             f"({number}/{windows['device'].nunique()})")
        for device in devices:
            outcome = outcomes.setdefault(device, TrainingOutcome())
            current = champions.get(device)
            version = outcome.bundle.version if outcome.bundle is not None else None
            context.add_asset_metadata({**outcome.metadata(), "kind": kind,
                                        "false_alarm_rate": options.false_alarm_rate,
                                        "version": version or (current.version if current else None)},
                                       partition_key=device)
        yield dg.MaterializeResult(metadata={"training_from": start.isoformat(), "training_to": end.isoformat(),
                                             "holdout_from": holdout_start.isoformat(), "kind": kind,
                                             "false_alarm_rate": options.false_alarm_rate})
        # The materialization naming the new versions is stored: only now do they become current.
        promoted = {d: o.bundle.version for d, o in outcomes.items() if o.status == "promoted"}
        for device, version in promoted.items():
            make_current(blob, device, version)
        context.log.info(f"{len(promoted)} of {len(devices)} device(s) got a new current model")
        refused = {d: o.reason for d, o in outcomes.items() if o.status in ("refused", "no model")}
        no_model = {d: o.sensors_without_model for d, o in outcomes.items() if o.sensors_without_model}
        yield dg.AssetCheckResult(check_name="every_sensor_has_model", passed=not refused and not no_model,
                                  severity=dg.AssetCheckSeverity.WARN,
                                  metadata={"devices_refused": dg.MetadataValue.json(refused),
                                            "sensors_without_model": dg.MetadataValue.json(no_model),
                                            "current_models_unreadable": dg.MetadataValue.json(unreadable)})
        sensors_refused = {d: o.sensors_refused for d, o in outcomes.items() if o.sensors_refused}
        yield dg.AssetCheckResult(
            check_name="challenger_gate", passed=gate_passed(outcomes), severity=dg.AssetCheckSeverity.WARN,
            metadata={"promoted": dg.MetadataValue.json(promoted),
                      "sensors_refused": dg.MetadataValue.json(sensors_refused),
                      "sensors_fell_back": dg.MetadataValue.json({d: o.fell_back for d, o in outcomes.items()
                                                                  if o.fell_back}),
                      "constant_sensors": dg.MetadataValue.json({d: o.constant_sensors for d, o in outcomes.items()
                                                                 if o.constant_sensors}),
                      "holdout_limit": pipeline.anomaly_rate_warn,
                      "device_models_refused": dg.MetadataValue.json({d: o.device_model_refused
                                                                      for d, o in outcomes.items()
                                                                      if o.device_model_refused}),
                      "device_model_holdout_limit": pipeline.device_anomaly_rate_warn,
                      "holdout_from": holdout_start.isoformat()})
