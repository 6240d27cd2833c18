"""``device_models``: one bundle per device, a fitted pipeline per sensor, versioned in blob ``models/``.

Retraining goes through the champion/challenger gate (``scoring.champion``): the challenger
learns only windows the current model accepts, and becomes current only if it passes the
hold-out hour (the window's last hour). Decisions are per device; a device whose training
fails is refused by name and the others go on. A promoted version becomes current only once
the materialization that records it is stored.
"""

import dagster as dg
import numpy as np
import pandas as pd

from bscore_assets.partitions import device_partitions_def
from bscore_assets.retries import retry_on_outage
from bscore_assets.settings import PipelineSettings
from resources.blob import BlobStore
from resources.sql import SqlStore
from scoring.champion import gate, windows_champion_accepts
from scoring.model_store import load_current_bundles_or_refusals, make_current, save_bundle
from scoring.training import SvmParams, train_device_bundle

HOUR = pd.Timedelta(hours=1)
TRAINING_ERRORS = (ValueError, ArithmeticError, np.linalg.LinAlgError)


class TrainingConfig(dg.Config):
    """The training window (hours, both ends included) and the SVM's hyperparameters.

    Without a window, the last ``training_hours`` hours that have windows are used.
    """

    from_hour: str | None = None
    to_hour: str | None = None
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
                 params: SvmParams, pipeline: PipelineSettings) -> dict:
    """Train one device's challenger and judge it; returns what happened (and the bundle, if any).

    With a current model, the challenger learns the hours before the hold-out hour, less what
    the current model flags, and must pass the hold-out hour. A first model learns the whole
    window it was given (the user's or the cron's), and its rate on the window's last hour is
    reported, not judged: there is nothing better to keep.
    """
    holdout = windows[windows["ts"] > holdout_start]
    training = windows[windows["ts"] <= holdout_start] if champion is not None else windows
    if training.empty:  # a one-hour window: train and judge on it
        training = windows
    selection = windows_champion_accepts(training, champion, pipeline.anomaly_rate_warn)
    try:
        bundle, too_few = train_device_bundle(device, selection.windows, params)
    except TRAINING_ERRORS as exc:
        return {"status": "refused", "reason": f"training failed: {type(exc).__name__}: {str(exc)[:300]}"}
    outcome = {"windows_trained": len(selection.windows), "windows_excluded": selection.excluded_windows,
               "hours_excluded": [f"{h:%Y-%m-%dT%H}" for h in selection.excluded_hours],
               "sensors_without_model": too_few}
    if not bundle.models:
        return {**outcome, "status": "no model", "reason": "no sensor had enough windows"}
    decision = gate(bundle, champion, holdout, pipeline.anomaly_rate_warn, pipeline.challenger_tolerance)
    return {**outcome, "bundle": bundle, "status": "promoted" if decision.promoted else "rejected",
            "reason": decision.reason, "challenger_rate": decision.challenger_rate,
            "champion_rate": decision.champion_rate}


@dg.asset(
    partitions_def=device_partitions_def,
    backfill_policy=dg.BackfillPolicy.single_run(),
    deps=[dg.AssetDep("sensor_aggregates", partition_mapping=dg.AllPartitionMapping())],
    check_specs=[
        dg.AssetCheckSpec("every_sensor_has_model", asset="device_models",
                          description="Every sensor with training windows got a model; no device's training failed."),
        dg.AssetCheckSpec("challenger_gate", asset="device_models",
                          description="Every retrained device's new model passed the hold-out and became current."),
    ],
    group_name="models",
    kinds={"scikit-learn"},
    description="Per-device bundle of StandardScaler + OneClassSVM pipelines, one per sensor, versioned in blob "
                "models/; retrained behind a champion/challenger gate.",
)
def device_models(context: dg.AssetExecutionContext, config: TrainingConfig, sql: SqlStore, blob: BlobStore,
                  pipeline: PipelineSettings):
    with retry_on_outage(context):
        start, end = training_window(config, sql, pipeline.training_hours)
        holdout_start = end - HOUR
        params = SvmParams(nu=config.nu, kernel=config.kernel, gamma=config.gamma, min_samples=config.min_samples)
        devices = list(context.partition_keys)
        windows = sql.read_sensor_values(start, end, devices=devices)
        champions, unreadable = load_current_bundles_or_refusals(blob, devices)
        outcomes = {}
        for number, (device, rows) in enumerate(windows.groupby("device", sort=True), start=1):
            outcomes[device] = train_device(device, rows, champions.get(device), holdout_start, params, pipeline)
            if "bundle" in outcomes[device]:
                save_bundle(blob, outcomes[device]["bundle"], make_current=False)
            context.log.info(f"device {device}: {outcomes[device]['status']} — {outcomes[device]['reason']} "
                             f"({number}/{windows['device'].nunique()})")
        for device in devices:
            outcome = outcomes.setdefault(device, {"status": "no model", "reason": "no windows in the training window"})
            current = champions.get(device)
            bundle = outcome.pop("bundle", None)
            context.add_asset_metadata({
                "status": outcome["status"],
                "reason": outcome["reason"],
                "version": bundle.version if outcome["status"] == "promoted" else (current.version if current else None),
                "candidate_version": bundle.version if bundle is not None else None,
                **{k: v for k, v in outcome.items() if k not in ("status", "reason")},
            }, partition_key=device)
            outcome["version"] = bundle.version if bundle is not None else None
        yield dg.MaterializeResult(metadata={"training_from": start.isoformat(), "training_to": end.isoformat(),
                                             "holdout_from": holdout_start.isoformat()})
        # The materialization naming the new versions is stored: only now do they become current.
        promoted = {d: o["version"] for d, o in outcomes.items() if o["status"] == "promoted"}
        for device, version in promoted.items():
            make_current(blob, device, version)
        context.log.info(f"{len(promoted)} of {len(devices)} device(s) got a new current model")
        refused = {d: o["reason"] for d, o in outcomes.items() if o["status"] in ("refused", "no model")}
        no_model = {d: o["sensors_without_model"] for d, o in outcomes.items() if o.get("sensors_without_model")}
        yield dg.AssetCheckResult(check_name="every_sensor_has_model", passed=not refused and not no_model,
                                  severity=dg.AssetCheckSeverity.WARN,
                                  metadata={"devices_refused": dg.MetadataValue.json(refused),
                                            "sensors_without_model": dg.MetadataValue.json(no_model),
                                            "current_models_unreadable": dg.MetadataValue.json(unreadable)})
        rejected = {d: o["reason"] for d, o in outcomes.items()
                    if o["status"] == "rejected" or (o.get("champion_rate") is None and
                                                     (o.get("challenger_rate") or 0) > pipeline.anomaly_rate_warn)}
        yield dg.AssetCheckResult(check_name="challenger_gate", passed=not rejected, severity=dg.AssetCheckSeverity.WARN,
                                  metadata={"promoted": dg.MetadataValue.json(promoted),
                                            "rejected": dg.MetadataValue.json(rejected),
                                            "holdout_from": holdout_start.isoformat()})
