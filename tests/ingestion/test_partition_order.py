"""Devices and sensors are registered as partitions in natural order, so Dagster's ranges over
them (a backfill's start..end, a run's range tags) read as people count: 2..10 holds 2 to 10."""

import dagster as dg
import pandas as pd
import pytest

from bscore_assets.ingestion.fleet import register_fleet
from bscore_assets.operations import contiguous_blocks
from bscore_assets.partitions import (
    device_partitions_def,
    hour_sensor_key,
    hour_sensor_partitions_def,
    natural_order,
    sensor_partitions_def,
)
from bscore_assets.runs import RANGE_END_TAG, RANGE_START_TAG, hour_sensor_range_tags
from bscore_assets.settings import Settings
from resources.sql import SqlStore
from tests.resources.test_sql import H0, windows

IDS = ["1", "2", "9", "10", "11"]


@pytest.fixture
def instance(tmp_path, bscore_home):
    """A fresh instance whose fleet (devices and sensors 1, 2, 9, 10, 11) is registered from SQL."""
    store = SqlStore(url=f"sqlite:///{tmp_path / 'bscore.db'}")
    store.replace_sensor_values(windows(H0, devices=tuple(IDS), sensors=tuple(IDS), per_hour=12), H0,
                                H0 + pd.Timedelta(hours=1))
    with dg.instance_for_test() as instance:
        register_fleet(instance, store, Settings.from_env())
        yield instance


def test_natural_order_counts_digit_runs_by_value():
    assert natural_order(["10", "2", "pump-10", "pump-2", "1", "b", "a"]) == ["1", "2", "10", "a", "b", "pump-2",
                                                                               "pump-10"]


def test_a_dagster_range_of_devices_and_sensors_holds_what_it_names(instance):
    assert instance.get_dynamic_partitions(device_partitions_def.name) == IDS
    assert instance.get_dynamic_partitions(sensor_partitions_def.name) == IDS
    with dg.partition_loading_context(dynamic_partitions_store=instance):
        keys = device_partitions_def.get_partition_keys_in_range(dg.PartitionKeyRange("2", "10"))
    assert keys == ["2", "9", "10"]


def test_backfill_run_tags_of_hours_x_sensors_start_before_they_end(instance):
    settings = Settings.from_env()
    known = instance.get_dynamic_partitions(sensor_partitions_def.name)
    [(first, last)] = contiguous_blocks(known, ["9", "2", "10"])
    tags = hour_sensor_range_tags(H0, H0, [first, last])
    assert (tags[RANGE_START_TAG], tags[RANGE_END_TAG]) == (hour_sensor_key(H0, "2"), hour_sensor_key(H0, "10"))
    with dg.partition_loading_context(dynamic_partitions_store=instance):
        covered = hour_sensor_partitions_def(settings).get_partition_keys_in_range(
            dg.PartitionKeyRange(tags[RANGE_START_TAG], tags[RANGE_END_TAG]))
    assert sorted(covered) == sorted(hour_sensor_key(H0, s) for s in ["2", "9", "10"])
