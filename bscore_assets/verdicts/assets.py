"""``device_verdicts``: one verdict per device window, voted by its sensors' predictions.

An asset of its own, hourly: a device's vote needs every sensor of the hour, while
``sensor_predictions`` is partitioned hour x sensor and a run may score a subset of sensors.
Each hour reads the predictions the partitions' manifests name (four columns, ids
dictionary-encoded, no SQL round trip), votes (``scoring.verdicts``), and replaces the hour in
SQL ``device_verdicts`` (one transaction) and in blob ``verdicts/<hour>.parquet`` (one atomic
write).
"""

from pathlib import Path

import dagster as dg
import pandas as pd

from bscore_assets.automation import lookback
from bscore_assets.partitions import hour_key, hour_of_key, hourly_partitions_def
from bscore_assets.retention.records import refuse_retired_hours
from bscore_assets.retries import retry_on_outage
from bscore_assets.settings import PipelineSettings, Settings
from bscore_assets.step_guard import guard_step
from bscore_assets.storage import read_hour_predictions, scored_sensors, verdicts_key
from bscore_assets.verdicts.checks import device_anomaly_rate_result, verdict_check_specs
from bscore_assets.verdicts.evaluation_report import load_labels
from resources.blob import BlobStore
from resources.sql import SqlStore
from scoring.evaluation import OVERALL, evaluate
from scoring.parquet import table_to_parquet_bytes
from scoring.verdicts import device_verdicts as vote_device_verdicts
from scoring.verdicts import verdict_summary

HOUR = pd.Timedelta(hours=1)


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


def hour_metadata(summary: dict, sensors: list[str], min_sensors: int) -> dict:
    """What a person reads on one hour's verdicts."""
    return {
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
                    "flagged), with the flagged sensors: blob verdicts/ and SQL device_verdicts.",
    )(device_verdicts)


def device_verdicts(context: dg.AssetExecutionContext, sql: SqlStore, blob: BlobStore, pipeline: PipelineSettings):
    guard_step()
    with retry_on_outage(context):
        min_sensors = pipeline.device_vote_min_sensors
        label_files = sorted(Path(pipeline.labels_dir).glob("*.csv")) if pipeline.labels_dir else []
        labels = load_labels(label_files) if label_files else None
        summaries = {}
        refuse_retired_hours(blob, "device_verdicts", [hour_of_key(key) for key in context.partition_keys])
        for hour in sorted(hour_of_key(key) for key in context.partition_keys):
            sensors = scored_sensors(blob, hour)
            predictions = read_hour_predictions(blob, hour, sensors)
            verdicts = vote_device_verdicts(predictions, min_sensors)
            sql.replace_device_verdicts_batches(hour, hour + HOUR, [verdicts])
            blob.write_bytes(verdicts_key(hour), table_to_parquet_bytes(verdicts))
            summaries[hour] = verdict_summary(verdicts)
            figures = labelled_figures(predictions.to_pandas(), verdicts.to_pandas(), labels) if labels is not None \
                else {}
            context.add_asset_metadata({**hour_metadata(summaries[hour], sensors, min_sensors), **figures},
                                       partition_key=hour_key(hour))
        windows = sum(s["device_windows"] for s in summaries.values())
        anomalous = sum(s["anomalous_device_windows"] for s in summaries.values())
        context.log.info(f"{windows} device windows voted in {len(summaries)} hour(s), {anomalous} anomalous "
                         f"(at least {min_sensors} sensor(s) flagged)")
        yield dg.MaterializeResult(metadata={"storage": blob.describe()})
        yield device_anomaly_rate_result(summaries, pipeline.device_anomaly_rate_warn,
                                         pipeline.device_anomaly_rate_error)
