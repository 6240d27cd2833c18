"""``device_models``: one bundle per device, a detector per sensor, versioned in blob ``models/``.

Training is sharded as scoring is: the run names shards of devices (``scoring.training_task``)
and the compute backend (a local process pool, or Azure ML jobs) trains each where the data is,
behind the gate (``scoring.device_training``: the challenger learns the training window less the
hours the current model flags over the WARN rate, each sensor is judged on the hold-out hour,
falls back to the robust kind or is refused by name), storing promoted bundles under new
versions. The run logs a line per shard, not per device, and records each device's outcome as
its partition's metadata; a promoted version becomes current only once the materialization that
records it is stored.
"""

import dagster as dg
import pandas as pd

from bscore_assets.partitions import device_partitions_def
from bscore_assets.retries import retry_on_outage
from bscore_assets.settings import PipelineSettings, Settings
from bscore_assets.step_guard import guard_step
from resources.blob import BlobStore
from resources.compute import ComputeBackend
from resources.sql import SqlStore
from scoring.detectors import FitOptions, SvmParams
from scoring.device_training import GateLimits
from scoring.model_store import make_current
from scoring.time_units import HOUR
from scoring.training_outcome import TrainingOutcome, gate_passed
from scoring.training_task import TrainingSummary, plan_training_shards

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
                  compute: ComputeBackend, pipeline: PipelineSettings):
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
        tasks = plan_training_shards(devices, start, end, holdout_start, kind, config.select, options,
                                     GateLimits(pipeline.anomaly_rate_warn, pipeline.device_anomaly_rate_warn),
                                     compute.devices_per_shard)
        context.log.info(f"training {len(devices)} device(s) on {start:%Y-%m-%dT%H}..{end - HOUR:%Y-%m-%dT%H}: "
                         f"{len(tasks)} shard(s) on {compute.describe()}")
        summaries: list[TrainingSummary] = compute.run_shards(context, tasks, sql, blob)
        outcomes: dict[str, TrainingOutcome] = {}
        versions: dict[str, str | None] = {}
        champions: dict[str, str] = {}
        unreadable: dict[str, str] = {}
        for summary in summaries:
            champions.update(summary.champions)
            unreadable.update(summary.unreadable)
            for device in summary.outcomes:
                outcomes[device], versions[device] = summary.outcome(device)
        for device in devices:
            outcome = outcomes.setdefault(device, TrainingOutcome())
            context.add_asset_metadata({**outcome.metadata(), "kind": kind,
                                        "false_alarm_rate": options.false_alarm_rate,
                                        "version": versions.get(device) or champions.get(device)},
                                       partition_key=device)
        yield dg.MaterializeResult(metadata={"training_from": start.isoformat(), "training_to": end.isoformat(),
                                             "holdout_from": holdout_start.isoformat(), "kind": kind,
                                             "false_alarm_rate": options.false_alarm_rate})
        # The materialization naming the new versions is stored: only now do they become current.
        promoted = {d: versions[d] for d, o in outcomes.items() if o.status == "promoted"}
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
