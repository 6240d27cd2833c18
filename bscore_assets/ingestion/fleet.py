"""Devices and sensors seen in the data become dynamic partitions."""

import dagster as dg

from bscore_assets.partitions import device_partitions_def, sensor_partitions_def
from resources.sql import SqlStore


def fleet_partition_requests(instance: dg.DagsterInstance, sql: SqlStore) -> list[dg.AddDynamicPartitionsRequest]:
    """Requests adding the devices and sensors with windows that are not partitions yet."""
    requests = []
    for partitions_def, column in ((device_partitions_def, "device"), (sensor_partitions_def, "sensor")):
        known = set(instance.get_dynamic_partitions(partitions_def.name))
        new = [key for key in sql.distinct(column) if key not in known]
        if new:
            requests.append(partitions_def.build_add_request(new))
    return requests


def register_fleet(instance: dg.DagsterInstance, sql: SqlStore) -> dict[str, list[str]]:
    """Add new devices and sensors as partitions now; return what was added."""
    added = {}
    for request in fleet_partition_requests(instance, sql):
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
        added[request.partitions_def_name] = list(request.partition_keys)
    return added
