"""``sensor_predictions``: every device's current model scores an hour's windows of a sensor.

A run may cover many (hour, sensor) partitions at once (backfills, ``bscore score``): it
reads their windows in one query, fans the devices out in shards to the compute backend,
and writes each partition's predictions to blob Parquet and SQL, replacing any earlier run's.
"""

import dagster as dg
import pandas as pd

from bscore_assets.partitions import hour_of_key, hour_sensor_key, hour_sensor_partitions_def
from bscore_assets.predictions.checks import prediction_check_results, prediction_check_specs
from bscore_assets.predictions.metadata import partition_metadata, partitions_to_plot
from bscore_assets.retries import retry_on_outage
from bscore_assets.settings import PipelineSettings
from bscore_assets.storage import prediction_key
from resources.blob import BlobStore
from resources.compute import ComputeBackend
from resources.sql import SqlStore
from scoring.model_store import load_current_bundles_or_refusals
from scoring.shards import plan_shards
from scoring.windows import hour_of_window

HOUR = pd.Timedelta(hours=1)


def run_partitions(context: dg.AssetExecutionContext) -> tuple[list[pd.Timestamp], list[str]]:
    """The hours and sensors a run covers (a run covers whole hour x sensor rectangles)."""
    keys = [hour_sensor_partitions_def.get_partition_key_from_str(k) for k in context.partition_keys]
    hours = sorted({hour_of_key(k.keys_by_dimension["hour"]) for k in keys})
    sensors = sorted({k.keys_by_dimension["sensor"] for k in keys})
    return hours, sensors


def by_partition(frame: pd.DataFrame) -> dict[tuple[pd.Timestamp, str], pd.DataFrame]:
    """A table of windows or predictions split by (hour, sensor) partition."""
    if frame.empty:
        return {}
    return dict(tuple(frame.groupby([hour_of_window(frame["ts"]), frame["sensor"]], sort=False)))


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
        start, end = hours[0], hours[-1] + HOUR
        windows = sql.read_sensor_values(start, end, sensors=sensors)
        bundles, refused = load_current_bundles_or_refusals(blob, sorted(windows["device"].unique()))
        for device, reason in refused.items():
            context.log.error(f"device {device}: model refused, not scored: {reason}")
        shards = plan_shards(windows, bundles, compute.devices_per_shard)
        context.log.info(f"{len(windows)} windows of {len(hours)} hour(s) x {len(sensors)} sensor(s), "
                         f"{len(bundles)} device bundle(s), {len(shards)} shard(s) on {compute.describe()}")
        results = compute.score_shards(context, shards)
        scored = pd.concat([r.predictions for r in results], ignore_index=True) if results else pd.DataFrame()
        missing = pd.concat([r.missing_models for r in results], ignore_index=True) if results else pd.DataFrame()
        for result in results:  # devices whose model failed while scoring: refused, by name
            for device, reason in zip(result.refused["device"], result.refused["reason"]):
                refused[str(device)] = reason
                context.log.error(f"device {device}: model refused while scoring, not scored: {reason}")
        # Split once by (hour, sensor) partition rather than filtering the whole table per partition.
        scored_parts = by_partition(scored)
        window_parts = by_partition(windows)
        partitions = []
        for hour in hours:
            hour_rows = []
            for sensor in sensors:
                rows = scored_parts.get((hour, sensor), scored.iloc[0:0]).reset_index(drop=True)
                blob.write_parquet(prediction_key(hour, sensor), rows)
                partitions.append((hour, sensor, rows, window_parts.get((hour, sensor), windows.iloc[0:0])))
                hour_rows.append(rows)
            sql.replace_predictions(pd.concat(hour_rows, ignore_index=True), hour, hour + HOUR, sensors)
        plotted = partitions_to_plot(partitions)
        for hour, sensor, rows, had in partitions:
            context.add_asset_metadata(partition_metadata(hour, sensor, rows, had, plot=(hour, sensor) in plotted),
                                       partition_key=hour_sensor_key(hour, sensor))
        context.log.info(f"{len(scored)} windows scored, {int(scored['is_anomaly'].sum()) if len(scored) else 0} "
                         f"anomalies, in {len(partitions)} partition(s); {len(missing)} device/sensor pair(s) "
                         f"without a model, {len(refused)} device(s) refused")
        yield dg.MaterializeResult(metadata={"storage": blob.describe()})
        yield from prediction_check_results(partitions, missing, refused, pipeline)
