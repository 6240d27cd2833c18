"""The partitions of bscore's assets, named once and imported where used.

The dynamic partitions (``devices``, ``sensors``) are the same in every deployment. The hourly
ones start at ``BSCORE_START``, so they are built from the ``Settings`` the definitions are
built from (``build_defs(settings)``), never from the environment at import.
"""

import re

import dagster as dg
import pandas as pd

from bscore_assets.settings import Settings

HOUR_KEY_FORMAT = "%Y-%m-%d-%H:%M"

# Dynamic partitions keep the order they were registered in: register new keys in
# ``natural_order``. Keys already registered keep their place (docs/operations.md).
device_partitions_def = dg.DynamicPartitionsDefinition(name="devices")
sensor_partitions_def = dg.DynamicPartitionsDefinition(name="sensors")


def natural_order(ids) -> list[str]:
    """Ids sorted as people count them: digit runs by value (``2`` before ``10``), the rest as text.

    Dynamic partitions keep the order they were registered in, and Dagster's ranges (a
    backfill's ``start..end``, a run's range tags) follow it: registered in this order, a range
    of devices ``2..10`` reads as it should and never starts after its end.
    """
    def key(value: str):
        return [(0, int(part), part) if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", value) if part]

    return sorted(map(str, ids), key=key)


def hourly_partitions_def(settings: Settings) -> dg.HourlyPartitionsDefinition:
    """Every hour from ``settings.start`` (``BSCORE_START``) on."""
    return dg.HourlyPartitionsDefinition(start_date=settings.start.strftime(HOUR_KEY_FORMAT), fmt=HOUR_KEY_FORMAT)


def hour_sensor_partitions_def(settings: Settings) -> dg.MultiPartitionsDefinition:
    """Hour x sensor, the partitions of ``sensor_predictions``."""
    return dg.MultiPartitionsDefinition({"hour": hourly_partitions_def(settings), "sensor": sensor_partitions_def})


def hour_key(hour: pd.Timestamp) -> str:
    return pd.Timestamp(hour).strftime(HOUR_KEY_FORMAT)


def hour_of_key(key: str) -> pd.Timestamp:
    return pd.to_datetime(key, format=HOUR_KEY_FORMAT)


def hour_sensor_key(hour: pd.Timestamp, sensor: str) -> str:
    """The ``sensor_predictions`` partition key of an hour and a sensor."""
    return str(dg.MultiPartitionKey({"hour": hour_key(hour), "sensor": sensor}))


def hour_sensor_of_key(key: str) -> tuple[pd.Timestamp, str]:
    """The hour and the sensor of a ``sensor_predictions`` partition key (``hour_sensor_key``'s inverse)."""
    # A multi-partition key joins its dimensions' keys with "|" in the order of their names,
    # and Dagster refuses a "|" inside a dimension's key.
    hour, sensor = str(key).split("|")
    return hour_of_key(hour), sensor
