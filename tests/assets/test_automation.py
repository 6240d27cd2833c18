"""Schedules and sensors evaluated with Dagster's testing APIs, their run requests executed in-process.

The simulator feeds the landing folder; nobody launches a run by hand: every run here is
one a sensor or schedule asked for, as the daemon would launch it.
"""

import json

import dagster as dg
import pandas as pd
import pytest

from bscore_assets.hours import hour_blocks, latest_ready_hour
from bscore_assets.ingestion.sensors import event_ingestion_sensor, fleet_partitions_sensor
from bscore_assets.models.schedules import device_retraining_schedule
from bscore_assets.partitions import hour_key, hour_sensor_key
from bscore_assets.predictions.schedules import hourly_scoring_schedule
from bscore_assets.predictions.sensors import model_rescoring_sensor
from bscore_assets.runs import RANGE_END_TAG, RANGE_START_TAG
from scoring.readings import readings_to_event_bodies
from scoring.simulate import simulate_readings

HOUR = pd.Timedelta(hours=1)
SENSORS = ["1", "2"]


@pytest.mark.parametrize(
    ("moment", "lateness", "expected"),
    [
        ("2026-03-01T10:15", 5, "2026-03-01T09:00"),
        ("2026-03-01T10:05", 5, "2026-03-01T09:00"),
        ("2026-03-01T10:04:59", 5, "2026-03-01T08:00"),
        ("2026-03-01T10:00", 0, "2026-03-01T09:00"),
        ("2026-03-01T10:30+01:00", 5, "2026-03-01T08:00"),
        ("2026-03-01T10:15", 90, "2026-03-01T07:00"),
    ],
)
def test_latest_ready_hour_waits_for_the_allowed_lateness(moment, lateness, expected):
    assert latest_ready_hour(moment, lateness) == pd.Timestamp(expected)


def test_hour_blocks_are_contiguous_runs():
    hours = [pd.Timestamp("2026-03-01T00:00") + HOUR * n for n in (5, 0, 1, 3, 2, 7)]
    assert hour_blocks(hours) == [
        (pd.Timestamp("2026-03-01T00:00"), pd.Timestamp("2026-03-01T03:00")),
        (pd.Timestamp("2026-03-01T05:00"), pd.Timestamp("2026-03-01T05:00")),
        (pd.Timestamp("2026-03-01T07:00"), pd.Timestamp("2026-03-01T07:00")),
    ]


class Daemon:
    """What the Dagster daemon does with an evaluation: keep the cursor, apply partition
    requests and asset events, launch each run request (in-process here)."""

    def __init__(self, defs: dg.Definitions, instance: dg.DagsterInstance):
        self.defs, self.instance, self.cursors = defs, instance, {}

    def tick_sensor(self, sensor) -> dg.SensorResult:
        context = dg.build_sensor_context(instance=self.instance, cursor=self.cursors.get(sensor.name),
                                          resources=self.defs.resources)
        result = sensor(context)
        self.cursors[sensor.name] = result.cursor
        for request in result.dynamic_partitions_requests or []:
            self.instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
        for event in result.asset_events or []:
            self.instance.report_runless_asset_event(event)
        if result.run_requests:
            self.launch(sensor.job_name, result.run_requests)
        return result

    def tick_schedule(self, schedule, moment: pd.Timestamp) -> list[dg.RunRequest]:
        context = dg.build_schedule_context(instance=self.instance, scheduled_execution_time=moment.to_pydatetime())
        result = schedule.evaluate_tick(context)
        requests = list(result.run_requests or [])
        self.launch(schedule.job_name, requests)
        return requests

    def launch(self, job_name, requests):
        for request in requests:
            result = self.defs.resolve_job_def(job_name).execute_in_process(
                instance=self.instance, tags=request.tags, run_config=request.run_config)
            assert result.success


def covered_hours(request: dg.RunRequest) -> tuple[str, str]:
    return request.tags[RANGE_START_TAG], request.tags[RANGE_END_TAG]


def publish(defs, readings: pd.DataFrame) -> None:
    defs.resources["events"].publish(readings_to_event_bodies(readings))


@pytest.fixture
def daemon(bscore_home):
    from definitions import build_defs

    with dg.instance_for_test() as instance:
        yield Daemon(build_defs(), instance)


def test_sensors_and_schedules_score_every_closed_hour(daemon):
    defs, instance = daemon.defs, daemon.instance
    now = pd.Timestamp.now("UTC").tz_localize(None)
    last = latest_ready_hour(now, 5)
    first = last - 2 * HOUR
    hours = [first, first + HOUR, last]
    open_hour = now.floor("h")  # not closed yet: it must wait
    readings = simulate_readings(2, 2, first, 3, anomaly_rate=0.01, seed=3)
    quitter = simulate_readings(1, 2, first, 0.25, anomaly_rate=0.0, seed=4).assign(device="9")
    early = simulate_readings(2, 2, open_hour, 0.02, anomaly_rate=0.0, seed=5)
    publish(defs, pd.concat([readings, quitter, early], ignore_index=True))

    # Drain and aggregate the three ready hours in one run; the open hour waits in the cursor.
    result = daemon.tick_sensor(event_ingestion_sensor)
    [request] = result.run_requests
    assert covered_hours(request) == (hour_key(first), hour_key(last))
    assert json.loads(result.cursor)["waiting"] == [hour_key(open_hour)]
    assert instance.get_materialized_partitions(dg.AssetKey("sensor_aggregates")) == {hour_key(h) for h in hours}
    assert instance.get_materialized_partitions(dg.AssetKey("raw_readings")) == {hour_key(h) for h in hours}
    # A restarted sensor resumes from its cursor: nothing new, still waiting for the open hour.
    again = daemon.tick_sensor(event_ingestion_sensor)
    assert not again.run_requests and hour_key(open_hour) in again.skip_reason.skip_message

    # Devices and sensors from the aggregates become partitions; device 9 stopped after its first quarter hour.
    fleet = daemon.tick_sensor(fleet_partitions_sensor)
    assert instance.get_dynamic_partitions("devices") == ["1", "2", "9"]
    assert instance.get_dynamic_partitions("sensors") == SENSORS
    [observation] = fleet.asset_events
    assert (observation.partition, observation.metadata["status"].value) == ("9", "stopped sending")
    assert not daemon.tick_sensor(fleet_partitions_sensor).asset_events  # reported once, not every tick

    # No model yet, so nothing to re-score; the cursor now points past every model materialization.
    assert not daemon.tick_sensor(model_rescoring_sensor).run_requests

    # Retraining over the configured window, all devices in one run.
    tick = last + HOUR + pd.Timedelta(minutes=30)
    [train] = daemon.tick_schedule(device_retraining_schedule, tick)
    assert covered_hours(train) == ("1", "9")
    window = train.run_config["ops"]["device_models"]["config"]
    assert pd.Timestamp(window["to_hour"]) == last
    assert instance.get_materialized_partitions(dg.AssetKey("device_models")) == {"1", "2", "9"}

    # The hourly schedule scores every ready hour not scored yet, every sensor, in one run.
    [score] = daemon.tick_schedule(hourly_scoring_schedule, last + HOUR + pd.Timedelta(minutes=15))
    assert covered_hours(score) == (f"{hour_key(first)}|{SENSORS[0]}", f"{hour_key(last)}|{SENSORS[-1]}")
    expected = {hour_sensor_key(h, s) for h in hours for s in SENSORS}
    assert instance.get_materialized_partitions(dg.AssetKey("sensor_predictions")) == expected
    predictions = defs.resources["sql"].read_predictions(first, last + HOUR)
    assert len(predictions) == 2 * 2 * 720 * 3 + 2 * 180  # devices 1-2 every window, device 9 its quarter hour
    assert not daemon.tick_schedule(hourly_scoring_schedule, last + HOUR + pd.Timedelta(minutes=15))

    # New model versions (retraining made them) re-score the recent aggregated hours.
    rescore = daemon.tick_sensor(model_rescoring_sensor)
    assert [covered_hours(r) for r in rescore.run_requests] == [covered_hours(score)]
    assert not daemon.tick_sensor(model_rescoring_sensor).run_requests  # cursor moved past them

    # A late reading for an aggregated hour re-aggregates it, and the next scoring tick re-scores it.
    late = simulate_readings(2, 2, hours[1] + pd.Timedelta(minutes=30, milliseconds=500), 0.01, seed=6)
    publish(defs, late)
    [reaggregate] = daemon.tick_sensor(event_ingestion_sensor).run_requests
    assert covered_hours(reaggregate) == (hour_key(hours[1]), hour_key(hours[1]))
    [rescored] = daemon.tick_schedule(hourly_scoring_schedule, last + HOUR + pd.Timedelta(minutes=15))
    assert covered_hours(rescored) == (f"{hour_key(hours[1])}|{SENSORS[0]}", f"{hour_key(hours[1])}|{SENSORS[-1]}")
    sql = defs.resources["sql"]
    windows = sql.read_sensor_values(hours[1], hours[1] + HOUR)
    assert windows["readings"].sum() == 2 * 2 * 3600 + len(late)
    scored = sql.read_predictions(hours[1], hours[1] + HOUR).merge(windows, on=["device", "sensor", "ts"])
    assert len(scored) == 2 * 2 * 720
    assert (scored["value_x"] == scored["value_y"]).all()  # scored on the re-aggregated windows
