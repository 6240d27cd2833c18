"""Sensors of the ingestion domain."""

import dagster as dg

from bscore_assets.ingestion.fleet import fleet_partition_requests
from resources.sql import SqlStore


@dg.sensor(minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.STOPPED)
def fleet_partitions_sensor(context: dg.SensorEvaluationContext, sql: SqlStore):
    """Register devices and sensors that appear in the aggregates as dynamic partitions."""
    requests = fleet_partition_requests(context.instance, sql)
    if not requests:
        return dg.SkipReason("no new devices or sensors")
    return dg.SensorResult(dynamic_partitions_requests=requests)
