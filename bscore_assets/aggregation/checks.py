"""Checks of ``sensor_aggregates``, evaluated on what is stored in SQL after each write."""

import dagster as dg
import numpy as np
import pandas as pd

from bscore_assets.partitions import hour_of_key
from resources.sql import SqlStore
from scoring.windows import hour_of_window

aggregate_check_specs = [
    dg.AssetCheckSpec("no_duplicate_windows", asset="sensor_aggregates",
                      description="Each (device, sensor, window) is stored once."),
    dg.AssetCheckSpec("finite_values", asset="sensor_aggregates",
                      description="Every window average is a finite number."),
    dg.AssetCheckSpec("device_coverage", asset="sensor_aggregates",
                      description="Every device with raw readings in an hour has windows for that hour."),
]


def aggregate_check_results(sql: SqlStore, stored: pd.DataFrame, start, end, raw_devices: dict[str, set]):
    duplicates = sql.duplicate_windows(start, end)
    yield dg.AssetCheckResult(check_name="no_duplicate_windows", passed=duplicates == 0,
                              metadata={"duplicate_windows": duplicates})
    non_finite = int((~np.isfinite(stored["value"].to_numpy())).sum())
    yield dg.AssetCheckResult(check_name="finite_values", passed=non_finite == 0,
                              metadata={"non_finite_windows": non_finite, "windows": len(stored)})
    hours = hour_of_window(stored["ts"])
    missing = {}
    for key, devices in raw_devices.items():
        hour = hour_of_key(key)
        have = set(stored.loc[hours == hour, "device"].unique())
        if devices - have:
            missing[key] = sorted(devices - have)
    yield dg.AssetCheckResult(check_name="device_coverage", passed=not missing,
                              metadata={"devices_missing_windows": dg.MetadataValue.json(missing)})
