"""``sensor_aggregates``: tumbling-window averages per device and sensor in SQL ``sensor_values``."""

import json

import dagster as dg
import numpy as np

from bscore_assets.aggregation.checks import aggregate_check_results, aggregate_check_specs
from bscore_assets.partitions import hour_key, hourly_partitions_def
from bscore_assets.retries import retry_on_outage
from bscore_assets.settings import PipelineSettings
from bscore_assets.storage import aggregated_marker_key, hours_between, read_raw_hour, window_bounds
from resources.blob import BlobStore
from resources.sql import SqlStore
from scoring.windows import tumbling_window_means


@dg.asset(
    partitions_def=hourly_partitions_def,
    backfill_policy=dg.BackfillPolicy.single_run(),
    deps=["raw_readings"],
    check_specs=aggregate_check_specs,
    group_name="aggregation",
    kinds={"sql"},
    description="Average of each device's sensor per tumbling window (end as timestamp), SQL table sensor_values.",
)
def sensor_aggregates(context: dg.AssetExecutionContext, blob: BlobStore, sql: SqlStore, pipeline: PipelineSettings):
    with retry_on_outage(context):
        start, end = window_bounds(context.partition_time_window)
        per_hour, raw_devices = {}, {}
        for hour in hours_between(start, end):
            readings = read_raw_hour(blob, hour)
            windows = tumbling_window_means(readings, pipeline.window_seconds)
            sql.replace_sensor_values(windows, hour, hour + np.timedelta64(1, "h"))
            blob.write_bytes(aggregated_marker_key(hour), json.dumps({"readings": len(readings)}).encode())
            raw_devices[hour_key(hour)] = set(readings["device"].unique())
            per_hour[hour_key(hour)] = {"windows": len(windows), "readings": len(readings)}
            context.log.info(f"{hour_key(hour)}: {len(readings)} readings -> {len(windows)} windows")
        stored = sql.read_sensor_values(start, end)
        yield dg.MaterializeResult(
            metadata={
                "windows": len(stored),
                "devices": int(stored["device"].nunique()),
                "sensors": int(stored["sensor"].nunique()),
                "window_seconds": pipeline.window_seconds,
                "hours": dg.MetadataValue.json(per_hour),
                "table": "sensor_values",
            }
        )
        yield from aggregate_check_results(sql, stored, start, end, raw_devices)
