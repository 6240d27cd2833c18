"""``device_verdicts``: one verdict per device window, voted by its sensors' predictions or
judged by the device's multivariate model (``BSCORE_DEVICE_VERDICT``).

An asset of its own, hourly: a device's vote needs every sensor of the hour, while
``sensor_predictions`` is partitioned hour x sensor and a run may score a subset of sensors.
Each hour reads the predictions the partitions' manifests name (four columns, ids
dictionary-encoded, no SQL round trip), votes (``scoring.verdicts``), and replaces the hour in
SQL ``device_verdicts`` (one transaction) and in blob ``verdicts/<hour>.parquet`` (one atomic
write). With ``multivariate`` it also reads the windows' values and model versions, and judges
each device with the device model of the bundle that scored it (the newest, when sensors of one
hour were scored by several); a device whose bundle has no device model, or cannot be loaded,
keeps the vote, and the hour's metadata names it. An hour whose manifests and rule are those its
stored verdicts were judged from (``inputs_version`` in its metadata) is not judged or written
again: a re-score that changed nothing leaves SQL and blob storage as they were.
"""

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dagster as dg
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from bscore_assets.automation import lookback
from bscore_assets.hours import latest_partition_metadata
from bscore_assets.partitions import hour_key, hour_of_key, hourly_partitions_def
from bscore_assets.retention.records import refuse_retired_hours
from bscore_assets.retries import retry_on_outage
from bscore_assets.settings import PipelineSettings, Settings
from bscore_assets.step_guard import guard_step
from bscore_assets.storage import MULTIVARIATE_COLUMNS, read_hour_predictions, scored_sensors
from bscore_assets.verdicts.checks import device_anomaly_rate_result, verdict_check_specs
from bscore_assets.verdicts.evaluation_report import load_labels
from resources.blob import BlobStore
from resources.sql import SqlStore
from scoring.blob_layout import verdicts_key
from scoring.evaluation import OVERALL, evaluate
from scoring.model_store import READ_THREADS, load_bundle
from scoring.safe_format import ModelFormatError
from scoring.parquet import table_to_parquet_bytes
from scoring.prediction_layout import read_manifest
from scoring.verdicts import device_verdicts as vote_device_verdicts
from scoring.verdicts import multivariate_verdicts, verdict_summary
from scoring.time_units import HOUR


def labelled_figures(predictions: pd.DataFrame, verdicts: pd.DataFrame, labels: pd.DataFrame | None) -> dict:
    """The hour's device-level figures against the user's labels (``bscore ingest --label-column``
    or ``bscore evaluate``'s stored files), beside flagging everything; none without labels."""
    if labels is None or labels.empty or predictions.empty:
        return {}
    start, end = predictions["ts"].min(), predictions["ts"].max()
    labels = labels[(labels["end"] >= start) & (labels["start"] < end)]
    if labels.empty:
        return {}
    overall = evaluate(predictions, labels, verdicts[["ts", "device", "is_anomaly"]]).devices.loc[OVERALL]
    return {f"labels_{name}": round(float(overall[name]), 4) for name in
            ("precision", "recall", "f1", "false_alarm_rate", "event_recall", "all_f1", "random_f1")
            if pd.notna(overall[name])}


def device_models_of(blob: BlobStore, predictions, loaded: dict) -> tuple[dict, dict[str, str]]:
    """Each device's device model (None where its bundle has none), from the newest bundle
    version that scored it in ``predictions``; and why a device's bundle could not be loaded.
    ``loaded`` caches bundles by (device, version) across the run's hours."""
    pairs = predictions.select(["device", "model_version"]).group_by(["device", "model_version"]).aggregate([])
    newest = {}
    for device, version in zip(pairs["device"].to_pylist(), pairs["model_version"].to_pylist()):
        newest[device] = max(newest.get(device, version), version)
    def load(pair):
        device, version = pair
        try:
            return load_bundle(blob, device, version).device_model
        except (ModelFormatError, FileNotFoundError, KeyError, OSError) as exc:
            return f"bundle {version}: {type(exc).__name__}: {str(exc)[:200]}"

    missing = [pair for pair in sorted(newest.items()) if pair not in loaded]
    with ThreadPoolExecutor(READ_THREADS) as pool:  # blob reads wait on the network, not the CPU
        loaded.update(zip(missing, pool.map(load, missing)))
    models, refused = {}, {}
    for device, version in sorted(newest.items()):
        if isinstance(loaded[device, version], str):
            refused[device] = loaded[device, version]
        else:
            models[device] = loaded[device, version]
    return models, refused


def judge_hour(blob: BlobStore, hour, sensors: list[str], method: str, min_sensors: int, loaded: dict):
    """The hour's predictions (the vote's columns) and verdicts by ``method``, and the devices
    the multivariate verdict could not judge, with why."""
    if method == "vote":
        predictions = read_hour_predictions(blob, hour, sensors)
        return predictions, vote_device_verdicts(predictions, min_sensors), {}
    predictions = read_hour_predictions(blob, hour, sensors, MULTIVARIATE_COLUMNS)
    models, unjudged = device_models_of(blob, predictions, loaded)
    unjudged.update({device: "its bundle has no device model" for device, model in models.items() if model is None})
    verdicts = multivariate_verdicts(predictions, models, min_sensors)
    return predictions.select(["ts", "device", "sensor", "is_anomaly"]), verdicts, unjudged


def verdict_inputs(blob: BlobStore, hour, sensors: list[str], method: str, min_sensors: int) -> str:
    """What the hour's verdicts are judged from, as one version: the manifests of its scored
    partitions (which name their parts and what those were scored from) and the rule."""
    manifests = [read_manifest(blob, hour, sensor) for sensor in sensors]
    described = json.dumps([sensors, manifests, method, min_sensors], sort_keys=True, default=str)
    return hashlib.sha256(described.encode()).hexdigest()[:16]


def hour_metadata(summary: dict, sensors: list[str], min_sensors: int, method: str = "vote",
                  unjudged: dict | None = None) -> dict:
    """What a person reads on one hour's verdicts."""
    return {
        "method": method,
        **({"devices_voted_instead": dg.MetadataValue.json(unjudged)} if unjudged else {}),
        "device_windows": summary["device_windows"],
        "anomalous_device_windows": summary["anomalous_device_windows"],
        "anomaly_rate": round(summary["anomaly_rate"], 4),
        "top_devices": dg.MetadataValue.json(summary["top_devices"]),
        "top_sensors": dg.MetadataValue.json(summary["top_sensors"]),
        "sensors_voting": dg.MetadataValue.json(sensors),
        "min_sensors": min_sensors,
    }


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
        lookback(settings)
        & (missing.with_label("missing, not failed") | updated.with_label("predictions updated"))
        & ~dg.AutomationCondition.any_deps_match(dg.AutomationCondition.will_be_requested())
        & ~dg.AutomationCondition.any_deps_in_progress()
        & ~dg.AutomationCondition.in_progress()
    ).with_label("predictions materialized")


def device_verdicts_asset(settings: Settings) -> dg.AssetsDefinition:
    """``device_verdicts`` on the hours from ``BSCORE_START``, with its automation condition."""
    return dg.asset(
        name="device_verdicts",
        partitions_def=hourly_partitions_def(settings),
        automation_condition=device_verdicts_condition(settings),
        backfill_policy=dg.BackfillPolicy.single_run(),
        deps=[dg.AssetDep("sensor_predictions",
                          partition_mapping=dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name="hour"))],
        check_specs=verdict_check_specs,
        group_name="predictions",
        kinds={"parquet", "sql"},
        description="A verdict per device window, voted by its sensors (anomalous when at least min_sensors are "
                    "flagged) or judged by the device's multivariate model (BSCORE_DEVICE_VERDICT), with each "
                    "sensor's contribution: blob verdicts/ and SQL device_verdicts.",
    )(device_verdicts)


def device_verdicts(context: dg.AssetExecutionContext, sql: SqlStore, blob: BlobStore, pipeline: PipelineSettings):
    guard_step()
    with retry_on_outage(context):
        min_sensors, method = pipeline.device_vote_min_sensors, pipeline.device_verdict
        if method not in ("vote", "multivariate"):
            raise ValueError(f"device_verdict={method!r} must be 'vote' or 'multivariate' (BSCORE_DEVICE_VERDICT)")
        loaded = {}
        label_files = sorted(Path(pipeline.labels_dir).glob("*.csv")) if pipeline.labels_dir else []
        labels = load_labels(label_files) if label_files else None
        summaries = {}
        refuse_retired_hours(blob, "device_verdicts", [hour_of_key(key) for key in context.partition_keys])
        previous = latest_partition_metadata(context.instance, "device_verdicts", context.partition_keys)
        unchanged = 0
        for hour in sorted(hour_of_key(key) for key in context.partition_keys):
            sensors = scored_sensors(blob, hour)
            inputs = verdict_inputs(blob, hour, sensors, method, min_sensors)
            before = previous.get(hour_key(hour), {})
            if before.get("inputs_version") == inputs and blob.exists(verdicts_key(hour)):
                # A re-score that changed no prediction: the stored verdicts stand, nothing is rewritten.
                unchanged += 1
                verdicts = pq.read_table(pa.BufferReader(blob.read_bytes(verdicts_key(hour))))
                unjudged = before.get("devices_voted_instead") or {}
                predictions = read_hour_predictions(blob, hour, sensors) if labels is not None else None
            else:
                predictions, verdicts, unjudged = judge_hour(blob, hour, sensors, method, min_sensors, loaded)
                sql.replace_device_verdicts_batches(hour, hour + HOUR, [verdicts])
                blob.write_bytes(verdicts_key(hour), table_to_parquet_bytes(verdicts))
            summaries[hour] = verdict_summary(verdicts)
            figures = labelled_figures(predictions.to_pandas(), verdicts.to_pandas(), labels) if labels is not None \
                else {}
            context.add_asset_metadata({**hour_metadata(summaries[hour], sensors, min_sensors, method, unjudged),
                                        **figures, "inputs_version": inputs},
                                       partition_key=hour_key(hour))
        windows = sum(s["device_windows"] for s in summaries.values())
        anomalous = sum(s["anomalous_device_windows"] for s in summaries.values())
        how = f"at least {min_sensors} sensor(s) flagged" if method == "vote" else \
            "by each device's multivariate model, the vote where a device has none"
        context.log.info(f"{windows} device windows judged in {len(summaries)} hour(s), {anomalous} anomalous ({how}); "
                         f"{unchanged} hour(s) unchanged since judged, not written again")
        yield dg.MaterializeResult(metadata={"storage": blob.describe(), "method": method})
        yield device_anomaly_rate_result(summaries, pipeline.device_anomaly_rate_warn,
                                         pipeline.device_anomaly_rate_error)
