"""``device_models``: one bundle per device, a fitted pipeline per sensor, versioned in blob ``models/``."""

import dagster as dg
import pandas as pd

from bscore_assets.partitions import device_partitions_def
from bscore_assets.retries import retry_on_outage
from bscore_assets.settings import PipelineSettings
from resources.blob import BlobStore
from resources.sql import SqlStore
from scoring.model_store import save_bundle
from scoring.training import SvmParams, train_device_bundle


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
        end = pd.Timestamp(config.to_hour).floor("h") + pd.Timedelta(hours=1)
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


@dg.asset(
    partitions_def=device_partitions_def,
    backfill_policy=dg.BackfillPolicy.single_run(),
    deps=[dg.AssetDep("sensor_aggregates", partition_mapping=dg.AllPartitionMapping())],
    check_specs=[dg.AssetCheckSpec("every_sensor_has_model", asset="device_models",
                                   description="Every sensor with training windows got a model.")],
    group_name="models",
    kinds={"scikit-learn"},
    description="Per-device bundle of StandardScaler + OneClassSVM pipelines, one per sensor, versioned in blob models/.",
)
def device_models(context: dg.AssetExecutionContext, config: TrainingConfig, sql: SqlStore, blob: BlobStore,
                  pipeline: PipelineSettings):
    with retry_on_outage(context):
        start, end = training_window(config, sql, pipeline.training_hours)
        params = SvmParams(nu=config.nu, kernel=config.kernel, gamma=config.gamma, min_samples=config.min_samples)
        devices = list(context.partition_keys)
        windows = sql.read_sensor_values(start, end, devices=devices)
        versions, skipped, n_models = {}, {}, 0
        for number, device in enumerate(devices, start=1):
            bundle, too_few = train_device_bundle(device, windows[windows["device"] == device], params)
            if bundle.models:
                save_bundle(blob, bundle)
                versions[device] = bundle.version
                n_models += len(bundle.models)
            if too_few or not bundle.models:
                skipped[device] = too_few or ["(no windows)"]
            context.log.info(f"device {device}: {len(bundle.models)} model(s) trained ({number}/{len(devices)})")
        yield dg.MaterializeResult(
            metadata={
                "training_from": start.isoformat(),
                "training_to": end.isoformat(),
                "windows": len(windows),
                "versions": dg.MetadataValue.json(versions),
                "models": n_models,
            }
        )
        yield dg.AssetCheckResult(check_name="every_sensor_has_model", passed=not skipped,
                                  severity=dg.AssetCheckSeverity.WARN,
                                  metadata={"sensors_without_model": dg.MetadataValue.json(skipped)})
