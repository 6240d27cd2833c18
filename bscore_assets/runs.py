"""Run tags that make one run cover a range of partitions (what backfill policies produce)."""

import pandas as pd

from bscore_assets.partitions import hour_key, hour_sensor_key


RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


def range_tags(first: str, last: str) -> dict[str, str]:
    return {RANGE_START_TAG: first, RANGE_END_TAG: last}


def hour_range_tags(first: pd.Timestamp, last: pd.Timestamp) -> dict[str, str]:
    return range_tags(hour_key(first), hour_key(last))


def hour_sensor_range_tags(first: pd.Timestamp, last: pd.Timestamp, sensors: list[str]) -> dict[str, str]:
    """Tags for the rectangle of hours ``first..last`` x the contiguous sensors ``sensors[0]..sensors[-1]``."""
    return range_tags(
        hour_sensor_key(first, sensors[0]),
        hour_sensor_key(last, sensors[-1]),
    )
