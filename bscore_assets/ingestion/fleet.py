"""The fleet as the data shows it: devices and sensors seen become dynamic partitions, and
registered devices without recent windows are reported as having stopped sending.

A sensor id becomes a partition only when the fleet's rules admit it (``scoring.fleet``):
declared in ``BSCORE_SENSORS``, seen from ``BSCORE_SENSOR_MIN_DEVICES`` devices, or sent by a
device with at most ``BSCORE_DEVICE_MAX_SENSORS`` sensor ids; so one device sending junk ids
cannot add a prediction file per id to every hour scored.
"""

import dagster as dg
import pandas as pd
import sqlalchemy as sa

from bscore_assets.partitions import device_partitions_def, natural_order, sensor_partitions_def
from bscore_assets.settings import Settings
from resources.sql import SqlStore, sensor_series, sensor_values
from scoring.fleet import admitted_sensors
from scoring.time_units import HOUR


def fleet_series(sql: SqlStore, settings: Settings | None = None) -> pd.DataFrame:
    """Every (device, sensor) that has had windows, a row per series: the ``sensor_series`` table
    bscore keeps as it writes windows (a scan of ``sensor_values``, keyed by time, grows with the
    history); with Stream Analytics writing the windows (``BSCORE_AGGREGATION=asa``), one
    DISTINCT over ``sensor_values``."""
    if settings is not None and settings.aggregation == "asa":
        query = sa.select(sensor_values.c.device, sensor_values.c.sensor).distinct()
    else:
        query = sa.select(sensor_series.c.device, sensor_series.c.sensor)
    with sql.engine.connect() as conn:
        return pd.DataFrame(conn.execute(query).all(), columns=["device", "sensor"])


def sensor_admission(sql: SqlStore, settings: Settings, series: pd.DataFrame | None = None
                     ) -> tuple[list[str], dict[str, str]]:
    """The sensors with windows that may be partitions, and ``{sensor: reason}`` for those held back.

    ``series`` is :func:`fleet_series`, read when not given.
    """
    series = fleet_series(sql, settings) if series is None else series
    counts = {str(sensor): int(n) for sensor, n in series.groupby("sensor")["device"].nunique().items()}
    ids_per_device = series.groupby("device")["sensor"].transform("nunique")
    fewest = {str(sensor): int(n) for sensor, n in ids_per_device.groupby(series["sensor"]).min().items()}
    return admitted_sensors(counts, int(series["device"].nunique()), settings.sensor_min_devices, settings.sensors,
                            fewest_ids_of_a_sender=fewest, max_device_sensors=settings.device_max_sensors)


def fleet_partition_requests(instance: dg.DagsterInstance, sql: SqlStore, settings: Settings | None = None,
                             held: dict[str, str] | None = None) -> list[dg.AddDynamicPartitionsRequest]:
    """Requests adding the devices with windows, and the admitted sensors, that are not partitions yet.

    ``settings`` gives the sensor rules (``BSCORE_SENSOR_MIN_DEVICES``, ``BSCORE_DEVICE_MAX_SENSORS``,
    ``BSCORE_SENSORS``); without it they are read from the environment. ``held``, when given,
    receives ``{sensor: reason}`` for the sensors held back.
    """
    settings = settings or Settings.from_env()
    series = fleet_series(sql, settings)
    sensors, held_back = sensor_admission(sql, settings, series)
    if held is not None:
        held.update(held_back)
    devices = natural_order(series["device"].astype(str).unique())
    requests = []
    for partitions_def, seen in ((device_partitions_def, devices), (sensor_partitions_def, sensors)):
        known = set(instance.get_dynamic_partitions(partitions_def.name))
        new = natural_order(key for key in seen if key not in known)
        if new:
            requests.append(partitions_def.build_add_request(new))
    return requests


def register_fleet(instance: dg.DagsterInstance, sql: SqlStore, settings: Settings | None = None,
                   held: dict[str, str] | None = None) -> dict[str, list[str]]:
    """Add new devices and admitted sensors as partitions now; return what was added (``held``,
    when given, receives the sensors held back, as in :func:`fleet_partition_requests`)."""
    added = {}
    for request in fleet_partition_requests(instance, sql, settings, held):
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
    end = pd.Timestamp(through_hour) + HOUR
    # One DISTINCT over the window's index, not its windows: a sensor tick holds a list of ids.
    sending = sql.devices_with_windows(end - pd.Timedelta(hours=hours), end)
    return sorted(set(devices) - set(sending))
