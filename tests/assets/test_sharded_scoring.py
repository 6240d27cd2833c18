"""Scoring in shards: the run moves names, the shards move data, and a failed shard leaves
no partial hour (SQL and blob keep the previous run's whole hour, or nothing)."""

import dagster as dg

import pandas as pd
import pytest

from bscore_assets.operations import Operations
from bscore_assets.storage import read_prediction_partition
from resources.blob import LocalBlobStore
from resources.compute import LocalComputeBackend
from resources.sql import SqlStore
from tests.assets.conftest import SCORE_START, forget_scoring_inputs

HOUR = pd.Timedelta(hours=1)
CALLS: list[tuple[str, object]] = []  # what the run's own process asked of SQL


class RecordingSqlStore(SqlStore):
    """The SQL store, noting the reads made in this process (shard workers are other processes)."""

    def read_sensor_values(self, *args, **kwargs):
        CALLS.append(("read_sensor_values", kwargs.get("devices")))
        return super().read_sensor_values(*args, **kwargs)

    def read_predictions(self, *args, **kwargs):
        CALLS.append(("read_predictions", kwargs.get("devices")))
        return super().read_predictions(*args, **kwargs)


def with_resources(ops: Operations, **resources) -> Operations:
    defs = ops.defs
    swapped = dg.Definitions(assets=defs.assets, jobs=defs.jobs, schedules=defs.schedules, sensors=defs.sensors,
                             asset_checks=defs.asset_checks, resources={**defs.resources, **resources})
    return Operations(ops.settings, swapped, ops.instance)


def one_device_shards(platform) -> Operations:
    return with_resources(platform, compute=LocalComputeBackend(devices_per_shard=1, max_workers=2))


def stored(platform):
    sql, blob = platform.resources["sql"], platform.resources["blob"]
    rows = sql.read_predictions(SCORE_START, SCORE_START + HOUR).sort_values(["device", "sensor", "ts"])
    parts = {s: read_prediction_partition(blob, SCORE_START, s) for s in map(str, range(1, 6))}
    return rows.reset_index(drop=True), parts


class PartWriteFails(LocalBlobStore):
    """A folder store whose writes of one device's prediction parts fail (a full disk, a
    storage outage): that device's shard fails while the others write theirs."""

    failing_part: str

    def write_bytes(self, key: str, data: bytes) -> None:
        if self.failing_part in key:
            raise OSError(f"no space left on device writing {key}")
        super().write_bytes(key, data)


def failing_shard_of(platform, device: str) -> Operations:
    blob = PartWriteFails(root=platform.resources["blob"].root, failing_part=f"/part-{device}--{device}--")
    return with_resources(platform, blob=blob, compute=LocalComputeBackend(devices_per_shard=1, max_workers=2))


def test_run_reads_no_windows_and_only_the_plotted_devices_rows(trained):
    platform = trained
    platform.ingest_hours(SCORE_START, SCORE_START)
    recording = with_resources(platform, sql=RecordingSqlStore(url=platform.resources["sql"].url),
                               compute=LocalComputeBackend(devices_per_shard=1, max_workers=2))
    CALLS.clear()
    *_, result = recording.score(SCORE_START, SCORE_START, refresh=False)
    assert result.totals["sensor_predictions.rows_scored"] == 3 * 5 * 720
    assert [name for name, _ in CALLS if name == "read_sensor_values"] == []  # the shards read them
    plotted = [devices for name, devices in CALLS if name == "read_predictions"]
    assert 0 < len(plotted) <= 5 and all(0 < len(devices) <= 4 for devices in plotted)


def test_a_failed_shard_leaves_no_partial_hour(trained):
    platform = trained
    sharded = one_device_shards(platform)
    with pytest.raises(RuntimeError):
        failing_shard_of(platform, "3").score(SCORE_START, SCORE_START)
    rows, parts = stored(platform)
    assert rows.empty and all(part is None for part in parts.values())  # absent, not devices 1-2 only

    sharded.score(SCORE_START, SCORE_START, refresh=False)
    first_rows, first_parts = stored(platform)
    assert len(first_rows) == 3 * 5 * 720 and all(len(p) == 3 * 720 for p in first_parts.values())
    # Every device's part of each partition, written by its own shard.
    assert len([k for k in platform.resources["blob"].list("predictions/") if "/part-" in k]) == 3 * 5

    forget_scoring_inputs(platform)  # else the unchanged hour is not scored again
    with pytest.raises(RuntimeError):
        failing_shard_of(platform, "3").score(SCORE_START, SCORE_START, refresh=False)
    rows, parts = stored(platform)
    pd.testing.assert_frame_equal(rows, first_rows)  # the earlier run's whole hour, not a mix
    for sensor, part in parts.items():
        pd.testing.assert_frame_equal(part, first_parts[sensor])
