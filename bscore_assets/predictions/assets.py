"""``sensor_predictions``: every device's current model scores an hour's windows of a sensor.

A run may cover many (hour, sensor) partitions at once (backfills, ``bscore score``). It moves
names, not data: it lists the devices with windows in one query, splits them into shards, and
the compute backend's tasks each read their own devices' windows, score them and write their
predictions (a staging table of the run's own, and one blob part per partition), reporting
counts. Once every shard succeeded the run publishes each hour in SQL (one transaction per
hour, inside the database) and each partition's manifest in blob storage, so an hour is one
run's whole hour or the previous one. It reads rows back only for the few partitions it plots.
"""

import dagster as dg
import pandas as pd

from bscore_assets.partitions import hour_of_key, hour_sensor_key, hour_sensor_partitions_def
from bscore_assets.predictions.checks import prediction_check_results, prediction_check_specs
from bscore_assets.predictions.metadata import partition_metadata, partitions_to_plot
from bscore_assets.predictions.plots import MAX_DEVICES
from bscore_assets.predictions.summaries import merge_shard_summaries, missing_models, refused_devices
from bscore_assets.retries import retry_on_outage
from bscore_assets.settings import PipelineSettings
from bscore_assets.storage import commit_prediction_partition
from resources.blob import BlobStore
from resources.compute import ComputeBackend
from resources.sql import SqlStore, staging_table_name
from scoring.shards import plan_shards

HOUR = pd.Timedelta(hours=1)


def run_partitions(context: dg.AssetExecutionContext) -> tuple[list[pd.Timestamp], list[str]]:
    """The hours and sensors a run covers (a run covers whole hour x sensor rectangles)."""
    keys = [hour_sensor_partitions_def.get_partition_key_from_str(k) for k in context.partition_keys]
    hours = sorted({hour_of_key(k.keys_by_dimension["hour"]) for k in keys})
    sensors = sorted({k.keys_by_dimension["sensor"] for k in keys})
    return hours, sensors


def score_in_shards(context, sql: SqlStore, blob: BlobStore, compute: ComputeBackend, hours, sensors) -> list[dict]:
    """Run every shard of the run's hours x sensors and publish their predictions; their summaries."""
    devices = sql.devices_with_windows(hours[0], hours[-1] + HOUR, sensors)
    for stale in sql.drop_stale_prediction_staging():
        context.log.info(f"dropped {stale}, left by a run that did not finish")
    staging = staging_table_name()
    tasks = plan_shards(devices, hours, sensors, compute.devices_per_shard, staging)
    context.log.info(f"{len(devices)} device(s) with windows in {len(hours)} hour(s) x {len(sensors)} sensor(s): "
                     f"{len(tasks)} shard(s) on {compute.describe()}")
    sql.create_prediction_staging(staging)
    try:
        shards = compute.run_shards(context, tasks, sql, blob)
        for hour in hours:
            published = sql.publish_staged_predictions(staging, hour, hour + HOUR, sensors)
            expected = sum(p["rows_scored"] for s in shards for p in s["partitions"] if pd.Timestamp(p["hour"]) == hour)
            if published != expected:  # a shard's write lost or doubled: never report it as done
                raise RuntimeError(f"hour {hour}: {published} predictions staged, shards reported {expected}")
    finally:
        sql.drop_prediction_staging(staging)
    return shards


@dg.asset(
    partitions_def=hour_sensor_partitions_def,
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
)
def sensor_predictions(context: dg.AssetExecutionContext, sql: SqlStore, blob: BlobStore,
                       compute: ComputeBackend, pipeline: PipelineSettings):
    with retry_on_outage(context):
        hours, sensors = run_partitions(context)
        shards = score_in_shards(context, sql, blob, compute, hours, sensors)
        summaries = merge_shard_summaries(shards, hours, sensors)
        for summary in summaries.values():
            commit_prediction_partition(blob, summary.hour, summary.sensor, summary.parts, summary.rows_scored)
        refused, missing = refused_devices(shards), missing_models(shards)
        for device, reason in refused.items():
            context.log.error(f"device {device}: model refused, not scored: {reason}")
        plotted = partitions_to_plot(list(summaries.values()))
        for (hour, sensor), summary in summaries.items():
            # Only the drawn devices' rows are read back, and only for the partitions plotted.
            plot_rows = (sql.read_predictions(hour, hour + HOUR, devices=summary.worst_devices(MAX_DEVICES),
                                              sensors=[sensor]) if (hour, sensor) in plotted else None)
            context.add_asset_metadata(partition_metadata(summary, plot_rows), partition_key=hour_sensor_key(hour, sensor))
        rows = sum(s.rows_scored for s in summaries.values())
        context.log.info(f"{rows} windows scored, {sum(s.anomalies for s in summaries.values())} anomalies, in "
                         f"{len(summaries)} partition(s) by {len(shards)} shard(s); {len(missing)} device/sensor "
                         f"pair(s) without a model, {len(refused)} device(s) refused")
        yield dg.MaterializeResult(metadata={"storage": blob.describe(), "shards": len(shards)})
        yield from prediction_check_results(list(summaries.values()), missing, refused, pipeline)
