"""``sensor_predictions``: every device's current model scores an hour's windows of a sensor.

A run may cover many (hour, sensor) partitions at once (backfills, ``bscore score``). An hour
whose inputs (its aggregates and the models' versions, ``inputs``) are what its stored
predictions were scored from is reported from its manifests, not scored again. The others move
names, not data: the run lists the devices with windows in one query, splits them into shards,
and the compute backend's tasks each read their own devices' windows, score them and write one
blob Parquet part per partition, reporting counts. Once every shard succeeded the run publishes
each hour to SQL (one transaction per hour) and each partition's manifest, so an hour is one
run's whole hour or the previous one: from the parts, a part in memory at a time, when the
shards ran in local processes; on the database server, from the rows the jobs staged in SQL
under the run's token, when they ran on Azure ML (``ComputeBackend.stages_predictions``), so no
prediction row passes through the run's process. It reads rows back only for the few devices
of the few partitions it plots.
"""

import dagster as dg
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from bscore_assets.automation import MODELS, scoring_freshness_policy, updated_since_handled
from bscore_assets.partitions import hour_key, hour_sensor_key, hour_sensor_of_key, hour_sensor_partitions_def
from bscore_assets.predictions.checks import prediction_check_results, prediction_check_specs
from bscore_assets.predictions.inputs import scoring_inputs, unchanged_partitions
from bscore_assets.predictions.metadata import partition_metadata, partitions_to_plot
from bscore_assets.predictions.plots import MAX_DEVICES
from bscore_assets.predictions.summaries import (
    PartitionSummary,
    merge_shard_summaries,
    missing_models,
    refused_devices,
)
from bscore_assets.retention.records import refuse_retired_hours
from bscore_assets.retries import retry_on_outage
from bscore_assets.settings import PipelineSettings, Settings
from bscore_assets.storage import commit_prediction_partition
from bscore_assets.step_guard import ensure_run_active, guard_step
from resources.blob import BlobStore
from resources.compute import ComputeBackend
from resources.sql import SqlStore
from scoring.blob_layout import prediction_prefix
from scoring.prediction_layout import run_token
from scoring.shard_summary import ShardSummary
from scoring.shards import plan_shards
from scoring.time_units import HOUR


def run_partitions(context: dg.AssetExecutionContext) -> tuple[list[pd.Timestamp], list[str]]:
    """The hours and sensors a run covers (a run covers whole hour x sensor rectangles)."""
    keys = [hour_sensor_of_key(k) for k in context.partition_keys]
    hours = sorted({hour for hour, _ in keys})
    sensors = sorted({sensor for _, sensor in keys})
    return hours, sensors


def score_in_shards(context, sql: SqlStore, blob: BlobStore, compute: ComputeBackend, hours, sensors,
                    token: str) -> list[ShardSummary]:
    """Run every shard of the hours x sensors; their summaries (each shard wrote its parts)."""
    devices = sql.devices_with_windows(hours[0], hours[-1] + HOUR, sensors)
    tasks = plan_shards(devices, hours, sensors, compute.devices_per_shard, token, compute.stages_predictions)
    context.log.info(f"{len(devices)} device(s) with windows in {len(hours)} hour(s) x {len(sensors)} sensor(s): "
                     f"{len(tasks)} shard(s) on {compute.describe()}")
    return compute.run_shards(context, tasks, sql, blob)


def _shard_batches(blob: BlobStore, summaries: list[PartitionSummary]):
    """The rows of the hour's parts, a shard at a time (its parts of every sensor together, in
    the tables' key order: SQLite inserts in key order several times faster than sensor by
    sensor); a partition whose parts do not hold what its shards reported raises (inside the
    publishing transaction, so nothing is kept)."""
    by_shard: dict[str, list[tuple[str, str]]] = {}  # a shard's part name -> (sensor, key) of each partition
    for summary in summaries:
        for key in summary.parts:
            by_shard.setdefault(key.rsplit("/", 1)[-1], []).append((summary.sensor, key))
    rows = {summary.sensor: 0 for summary in summaries}
    for parts in by_shard.values():  # in shard order, as the shards reported them
        tables = []
        for sensor, key in parts:
            tables.append(pq.read_table(pa.BufferReader(blob.read_bytes(key))))
            rows[sensor] += len(tables[-1])
        yield pa.concat_tables(tables).sort_by([("device", "ascending"), ("sensor", "ascending"), ("ts", "ascending")])
    for summary in summaries:
        if rows[summary.sensor] != summary.rows_scored:
            raise RuntimeError(f"{hour_key(summary.hour)}, sensor {summary.sensor}: the parts hold "
                               f"{rows[summary.sensor]} predictions, the shards reported {summary.rows_scored}")


def remove_run_parts(blob: BlobStore, hours, sensors, token: str) -> None:
    """Delete the parts run ``token`` wrote for partitions it did not commit (it failed)."""
    for hour in hours:
        for sensor in sensors:
            for key in blob.list(prediction_prefix(hour, sensor)):
                if key.endswith(f"--{token}.parquet"):
                    blob.delete(key)


def publish_hour(sql: SqlStore, blob: BlobStore, hour: pd.Timestamp, summaries: list[PartitionSummary],
                 inputs: str | None, staged_by: str | None = None) -> None:
    """Replace the hour's predictions of the summaries' sensors in SQL (one transaction), then
    commit each partition's manifest with its inputs and summary. The rows come from the rows run
    ``staged_by``'s jobs staged in SQL, moved on the server, or else from the blob parts, read here."""
    if staged_by is not None:
        sql.publish_staged_predictions(staged_by, hour, hour + HOUR, {s.sensor: s.rows_scored for s in summaries})
    else:
        sql.replace_predictions_batches(hour, hour + HOUR, [s.sensor for s in summaries],
                                        _shard_batches(blob, summaries))
    for summary in summaries:
        commit_prediction_partition(blob, hour, summary.sensor, summary.parts, summary.rows_scored,
                                    inputs=inputs, summary=summary.to_json())


def score_and_publish(context, sql: SqlStore, blob: BlobStore, compute: ComputeBackend, hours, sensors,
                      inputs: dict) -> tuple[list[ShardSummary], dict[tuple[pd.Timestamp, str], PartitionSummary]]:
    """Score the hours in shards and publish each; the shards' reports and the partitions'
    summaries. A run that fails removes the parts it wrote for the hours it did not publish."""
    token, published = run_token(), []
    try:
        shards = score_in_shards(context, sql, blob, compute, hours, sensors, token)
        scored = merge_shard_summaries(shards, hours, sensors)
        for hour in hours:
            ensure_run_active(context.instance, context.run_id)
            publish_hour(sql, blob, hour, [scored[(hour, sensor)] for sensor in sensors], inputs[hour],
                         staged_by=token if compute.stages_predictions else None)
            published.append(hour)
    except BaseException:
        try:
            remove_run_parts(blob, [h for h in hours if h not in published], sensors, token)
            if compute.stages_predictions:
                sql.discard_staged_predictions(token)
        except Exception as cleanup:  # the run's own failure is what the operator must see
            context.log.warning(f"parts and staged rows of run {token} not removed ({cleanup}); no manifest "
                                "names them, and staged rows are dropped by a later publish once stale")
        raise
    return shards, scored


def sensor_predictions_condition(settings: Settings) -> dg.AutomationCondition:
    """Hours x sensors of the look-back when their aggregates or the models changed, unless an
    upstream blocking check failed."""
    some_model = dg.AutomationCondition.any_deps_match(~dg.AutomationCondition.missing()).allow(MODELS)
    return (
        updated_since_handled(settings)
        & some_model.with_label("some device has a model")
        & dg.AutomationCondition.all_deps_blocking_checks_passed()
    ).with_label("aggregates or models changed")


def sensor_predictions_asset(settings: Settings) -> dg.AssetsDefinition:
    """``sensor_predictions`` on the hours from ``BSCORE_START`` x the sensors, with its automation
    condition and freshness policy."""
    return dg.asset(
        name="sensor_predictions",
        partitions_def=hour_sensor_partitions_def(settings),
        automation_condition=sensor_predictions_condition(settings),
        freshness_policy=scoring_freshness_policy(settings),
        backfill_policy=dg.BackfillPolicy.single_run(),
        deps=[
            dg.AssetDep("sensor_aggregates",
                        partition_mapping=dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name="hour")),
            dg.AssetDep("device_models", partition_mapping=dg.AllPartitionMapping()),
        ],
        check_specs=prediction_check_specs,
        group_name="predictions",
        kinds={"parquet", "sql"},
        description="Score and anomaly flag of every window, per hour and sensor: blob predictions/ and SQL predictions.",
    )(sensor_predictions)


def sensor_predictions(context: dg.AssetExecutionContext, sql: SqlStore, blob: BlobStore,
                       compute: ComputeBackend, pipeline: PipelineSettings):
    guard_step()
    with retry_on_outage(context):
        hours, sensors = run_partitions(context)
        refuse_retired_hours(blob, "sensor_predictions", hours)
        inputs = scoring_inputs(context.instance, blob, hours)
        summaries: dict[tuple[pd.Timestamp, str], PartitionSummary] = {}
        for hour in hours:
            unchanged = unchanged_partitions(blob, sql, hour, sensors, inputs[hour])
            if unchanged:
                summaries.update({(hour, sensor): summary for sensor, summary in unchanged.items()})
                context.log.info(f"{hour_key(hour)}: aggregates and models unchanged since scoring (inputs "
                                 f"{inputs[hour]}); not scored again")
        to_score = [hour for hour in hours if (hour, sensors[0]) not in summaries]
        shards, scored = score_and_publish(context, sql, blob, compute, to_score, sensors, inputs) if to_score \
            else ([], {})
        summaries = dict(sorted({**summaries, **scored}.items()))
        refused, missing = refused_devices(summaries.values()), missing_models(summaries.values())
        for device, reason in refused.items():
            context.log.error(f"device {device}: model refused, not scored: {reason}")
        plotted = partitions_to_plot(list(scored.values()))
        for (hour, sensor), summary in summaries.items():
            # Only the drawn devices' rows are read back, and only for the partitions plotted.
            plot_rows = (sql.read_predictions(hour, hour + HOUR, devices=summary.worst_devices(MAX_DEVICES),
                                              sensors=[sensor]) if (hour, sensor) in plotted else None)
            context.add_asset_metadata({**partition_metadata(summary, plot_rows), "inputs_version": inputs[hour]},
                                       partition_key=hour_sensor_key(hour, sensor))
        rows = sum(s.rows_scored for s in scored.values())
        context.log.info(f"{rows} windows scored, {sum(s.anomalies for s in scored.values())} anomalies, in "
                         f"{len(scored)} partition(s) by {len(shards)} shard(s), {len(summaries) - len(scored)} "
                         f"partition(s) unchanged; {len(missing)} device/sensor pair(s) without a model, "
                         f"{len(refused)} device(s) refused")
        yield dg.MaterializeResult(metadata={"storage": blob.describe(), "shards": len(shards)})
        yield from prediction_check_results(list(summaries.values()), missing, refused, pipeline)
