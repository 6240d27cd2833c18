"""The fleet as the data shows it: devices and sensors seen become dynamic partitions, and
registered devices without recent windows are reported as having stopped sending."""

import dagster as dg
import pandas as pd

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


def silent_devices(sql: SqlStore, devices: list[str], through_hour: pd.Timestamp, hours: int) -> list[str]:
    """The ``devices`` without a single window in the ``hours`` hours ending with ``through_hour``.

    Parameters
    ----------
    sql : SqlStore
        Where the aggregates are.
    devices : list of str
        The registered devices.
    through_hour : Timestamp
        The last aggregated hour (its start).
    hours : int
        How many hours without windows make a device silent.
    """
    end = pd.Timestamp(through_hour) + pd.Timedelta(hours=1)
    recent = sql.read_sensor_values(end - pd.Timedelta(hours=hours), end)
    return sorted(set(devices) - set(recent["device"].unique()))
