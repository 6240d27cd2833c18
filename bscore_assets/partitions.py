"""The partitions of bscore's assets, declared once and imported where used."""

import dagster as dg
import pandas as pd

from bscore_assets.settings import Settings

HOUR_KEY_FORMAT = "%Y-%m-%d-%H:%M"

hourly_partitions_def = dg.HourlyPartitionsDefinition(
    start_date=Settings.from_env().start.strftime(HOUR_KEY_FORMAT), fmt=HOUR_KEY_FORMAT
)
device_partitions_def = dg.DynamicPartitionsDefinition(name="devices")
sensor_partitions_def = dg.DynamicPartitionsDefinition(name="sensors")
hour_sensor_partitions_def = dg.MultiPartitionsDefinition(
    {"hour": hourly_partitions_def, "sensor": sensor_partitions_def}
)


def hour_key(hour: pd.Timestamp) -> str:
    return pd.Timestamp(hour).strftime(HOUR_KEY_FORMAT)


def hour_of_key(key: str) -> pd.Timestamp:
    return pd.to_datetime(key, format=HOUR_KEY_FORMAT)


def hour_sensor_key(hour: pd.Timestamp, sensor: str) -> str:
    """The ``sensor_predictions`` partition key of an hour and a sensor."""
    return str(dg.MultiPartitionKey({"hour": hour_key(hour), "sensor": sensor}))
