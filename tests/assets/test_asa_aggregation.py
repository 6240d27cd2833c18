"""``BSCORE_AGGREGATION=asa``: the assets are external and ``asa_aggregation_sensor`` records
each hour once Stream Analytics' output for it is complete, with the local metadata and checks.

Stream Analytics cannot run here; the test writes what its job writes (resources/asa.py):
the windows of ``scoring.windows.tumbling_window_means`` into SQL ``sensor_values`` and the
census of distinct readings per hour and device as Parquet under ``asa-census/<hour>/``. The
sensor is evaluated as the daemon does, and its events are stored as the daemon stores them.
"""

from __future__ import annotations

import json

import dagster as dg
import pandas as pd
import pytest

from bscore_assets.aggregation.asa import SENSOR_NAME
from scoring.blob_layout import asa_census_prefix
from bscore_assets.hours import latest_partition_metadata
from bscore_assets.partitions import hour_key
from bscore_assets.settings import Settings
from scoring.readings import drop_duplicate_readings
from scoring.simulate import simulate_readings
from scoring.windows import hour_of_window, tumbling_window_means

START = pd.Timestamp("2026-02-01T00:00")
HOUR = pd.Timedelta(hours=1)


@pytest.fixture
def asa_defs(bscore_home, monkeypatch):
    from definitions import build_defs

    monkeypatch.setenv("BSCORE_AGGREGATION", "asa")
    monkeypatch.setenv("BSCORE_START", "2026-01-01T00:00")
    settings = Settings.from_env()
    settings.home.mkdir(parents=True)
    return settings, build_defs(settings)


def write_as_the_job_does(resources: dict, readings: pd.DataFrame, window_seconds: int = 5) -> pd.DataFrame:
    """SQL windows and the hour census, as the Stream Analytics job writes them; returns the windows."""
    readings = drop_duplicate_readings(readings)
    windows = tumbling_window_means(readings, window_seconds)
    hours = hour_of_window(windows["ts"])
    for hour in sorted(hours.unique()):
        resources["sql"].replace_sensor_values(windows[hours == hour], hour, hour + HOUR)
    by_hour = readings.assign(hour=hour_of_window(readings["ts"]))
    for hour, group in by_hour.groupby("hour"):
        census = group.groupby("device").size().rename("readings").reset_index()
        census.insert(0, "hour", f"{hour:%Y-%m-%dT%H}")
        resources["blob"].write_parquet(asa_census_prefix(hour) + "0_census.parquet", census)
    return windows


def tick(defs: dg.Definitions, instance: dg.DagsterInstance, cursor: str | None):
    """One evaluation of the sensor; its events stored as the daemon stores them."""
    sensor = defs.get_sensor_def(SENSOR_NAME)
    with dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs, resources=defs.resources) as context:
        result = sensor(context)
    for event in result.asset_events:
        instance.report_runless_asset_event(event)
    return result


def check_history(instance, name: str) -> dict[str, bool]:
    records = instance.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(dg.AssetKey("sensor_aggregates"), name), limit=100)
    evaluations = [r.event.dagster_event.event_specific_data for r in records]
    return {e.partition: e.passed for e in evaluations}


def test_asa_mode_makes_the_hourly_assets_external_and_drops_the_drain(asa_defs):
    _, defs = asa_defs
    graph = defs.resolve_asset_graph()
    for key in ("raw_readings", "sensor_aggregates"):
        assert not graph.get(dg.AssetKey(key)).is_executable
    assert graph.get(dg.AssetKey("sensor_predictions")).is_executable
    assert dg.AssetKey("raw_readings") in graph.get(dg.AssetKey("sensor_aggregates")).parent_keys
    sensors = {s.name for s in defs.sensors}
    assert SENSOR_NAME in sensors and "late_readings_sensor" not in sensors
    assert "ingest_job" not in {j.name for j in defs.jobs}


def test_each_hour_is_recorded_once_after_its_lateness_with_the_local_metadata_and_checks(asa_defs):
    settings, defs = asa_defs
    resources = defs.resources
    readings = simulate_readings(3, 2, START, 2, anomaly_rate=0.0, seed=3)
    # A repeated delivery: the job keeps each (device, sensor, ts) once, as local readers do.
    readings = pd.concat([readings, readings.iloc[:50]], ignore_index=True)
    with dg.instance_for_test() as instance:
        # Windows up to 01:04:55: hour 00 ends at 01:00, plus 5 minutes of lateness not yet passed.
        upto = readings[readings["ts"] <= START + HOUR + pd.Timedelta(minutes=4, seconds=55)]
        windows = write_as_the_job_does(resources, upto)
        result = tick(defs, instance, None)
        assert result.asset_events == [] and "not complete" in result.skip_reason.skip_message
        # The watermark reaches 01:05: hour 00 is complete, hour 01 is not.
        windows = write_as_the_job_does(resources, readings[readings["ts"] <= START + HOUR + pd.Timedelta(minutes=5)])
        result = tick(defs, instance, result.cursor)
        keys = {e.partition for e in result.asset_events if isinstance(e, dg.AssetMaterialization)}
        assert keys == {hour_key(START)}
        again = tick(defs, instance, result.cursor)  # nothing new: recorded once
        assert again.asset_events == []

        hour_windows = windows[hour_of_window(windows["ts"]) == START]
        distinct = drop_duplicate_readings(readings)
        hour_readings = distinct[hour_of_window(distinct["ts"]) == START]
        [aggregates] = latest_partition_metadata(instance, "sensor_aggregates", [hour_key(START)]).values()
        assert (aggregates["windows"], aggregates["readings"], aggregates["devices"], aggregates["sensors"],
                aggregates["window_seconds"]) == (len(hour_windows), len(hour_readings), 3, 2, 5)
        assert aggregates["readings"] == len(hour_readings) < len(readings[hour_of_window(readings["ts"]) == START])
        [raw] = latest_partition_metadata(instance, "raw_readings", [hour_key(START)]).values()
        assert raw["readings"] == len(hour_readings) and raw["raw_prefix"] == "raw/2026-02-01T00/"
        for name in ("finite_values", "readings_reconciled", "device_coverage"):
            assert check_history(instance, name) == {hour_key(START): True}
        assert json.loads(again.cursor) == {"next": (START + HOUR).isoformat()}


def test_lost_windows_fail_reconciliation_and_coverage_and_a_late_census_is_waited_for(asa_defs):
    _, defs = asa_defs
    resources = defs.resources
    readings = simulate_readings(3, 2, START, 3, anomaly_rate=0.0, seed=4)
    with dg.instance_for_test() as instance:
        write_as_the_job_does(resources, readings)
        # Hour 01's windows of device 2 never reached SQL; hour 00 lost none.
        windows = tumbling_window_means(readings[(hour_of_window(readings["ts"]) == START + HOUR)
                                                 & (readings["device"] != "2")], 5)
        resources["sql"].replace_sensor_values(windows, START + HOUR, START + 2 * HOUR)
        # Hour 02's census is not written yet although its windows are (blob output behind SQL).
        for key in resources["blob"].list(asa_census_prefix(START + 2 * HOUR)):
            resources["blob"].delete(key)
        # ... and the watermark has passed hour 02 too.
        extra = tumbling_window_means(simulate_readings(1, 1, START + 3 * HOUR, 0.1, anomaly_rate=0.0, seed=5), 5)
        resources["sql"].replace_sensor_values(extra, START + 3 * HOUR, START + 4 * HOUR)

        result = tick(defs, instance, None)
        recorded = sorted({e.partition for e in result.asset_events if isinstance(e, dg.AssetMaterialization)})
        assert recorded == [hour_key(START), hour_key(START + HOUR)]  # 02 waits for its census
        assert json.loads(result.cursor) == {"next": (START + 2 * HOUR).isoformat()}
        assert check_history(instance, "readings_reconciled") == {hour_key(START): True, hour_key(START + HOUR): False}
        assert check_history(instance, "device_coverage") == {hour_key(START): True, hour_key(START + HOUR): False}
        failed = next(e for e in result.asset_events if isinstance(e, dg.AssetCheckEvaluation)
                      and e.check_name == "device_coverage" and not e.passed)
        assert failed.metadata["devices_missing_windows"].value == {hour_key(START + HOUR): ["2"]}
        reconciled = next(e for e in result.asset_events if isinstance(e, dg.AssetCheckEvaluation)
                          and e.check_name == "readings_reconciled" and not e.passed)
        lost = reconciled.metadata["mismatched_hours"].value[hour_key(START + HOUR)]
        device_2 = int(((hour_of_window(readings["ts"]) == START + HOUR) & (readings["device"] == "2")).sum())
        assert lost["devices"] == {"2": [device_2, 0]} and lost["expected"] - lost["stored"] == device_2 > 0
