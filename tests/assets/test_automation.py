"""Declarative Automation and the observing sensors, evaluated on a simulated clock.

``dg.evaluate_automation_conditions`` plays the automation sensor's ticks at chosen times and
what it requests is executed in-process, as the daemon would launch it; the observing sensors
are ticked with ``build_sensor_context``. Nobody chooses partitions by hand: every run here is
one the conditions or a sensor asked for. (``tests/automation/test_daemon.py`` runs the real
``dagster-daemon``.)
"""

from __future__ import annotations

import dagster as dg
import pandas as pd
import pytest

from bscore_assets.hours import hour_blocks
from bscore_assets.operations import contiguous_blocks, run_report
from bscore_assets.partitions import hour_key, hour_of_key, hour_sensor_of_key, sensor_partitions_def
from bscore_assets.runs import hour_range_tags, hour_sensor_range_tags, range_tags
from bscore_assets.settings import Settings
from scoring.readings import readings_to_event_bodies
from scoring.simulate import simulate_readings

pytestmark = pytest.mark.slow  # Dagster runs for every tick's requests

HOUR = pd.Timedelta(hours=1)
DAY = pd.Timestamp("2026-03-01T00:00")
ORDER = ["raw_readings", "sensor_aggregates", "device_models", "sensor_predictions", "device_verdicts"]


class Automation:
    """The automation sensor's ticks at simulated times, and the runs they request."""

    def __init__(self, defs: dg.Definitions, instance: dg.DagsterInstance):
        self.defs, self.instance, self.cursor, self.reports = defs, instance, None, []
        self.job = defs.resolve_implicit_global_asset_job_def()

    def tick(self, moment: pd.Timestamp) -> dict[str, set]:
        result = dg.evaluate_automation_conditions(defs=self.defs, instance=self.instance, cursor=self.cursor,
                                                   evaluation_time=moment.tz_localize("UTC").to_pydatetime())
        self.cursor = result.cursor
        requested = {name: set(result.get_requested_partitions(dg.AssetKey(name))) for name in ORDER}
        for name in ORDER:
            if requested[name]:
                self.launch(name, requested[name])
        return requested

    def launch(self, asset: str, keys: set[str], tags: dict | None = None) -> None:
        for run_tags in self.range_tags(asset, keys):
            result = self.job.execute_in_process(instance=self.instance, asset_selection=[dg.AssetKey(asset)],
                                                 tags={**run_tags, **(tags or {})}, raise_on_error=False)
            self.reports.append(run_report(result, asset))

    def range_tags(self, asset: str, keys: set[str]) -> list[dict]:
        if asset in ("raw_readings", "sensor_aggregates", "device_verdicts"):
            return [hour_range_tags(a, b) for a, b in hour_blocks(hour_of_key(k) for k in keys)]
        if asset == "device_models":
            known = self.instance.get_dynamic_partitions("devices")
            return [range_tags(a, b) for a, b in contiguous_blocks(known, list(keys))]
        parsed = [hour_sensor_of_key(k) for k in keys]
        sensors = self.instance.get_dynamic_partitions(sensor_partitions_def.name)
        wanted = sorted({sensor for _, sensor in parsed}, key=sensors.index)
        return [hour_sensor_range_tags(first, last, [a, b])
                for first, last in hour_blocks(hour for hour, _ in parsed)
                for a, b in contiguous_blocks(sensors, wanted)]

    def tick_sensor(self, name: str):
        sensor = self.defs.get_sensor_def(name)
        result = sensor(dg.build_sensor_context(instance=self.instance, resources=self.defs.resources))
        if isinstance(result, dg.SkipReason):
            return result
        requests = result.run_requests if isinstance(result, dg.SensorResult) else result
        if isinstance(result, dg.SensorResult):
            for request in result.dynamic_partitions_requests or []:
                self.instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
        for request in requests or []:
            if isinstance(request, dg.RunRequest):
                result = self.job.execute_in_process(instance=self.instance, asset_selection=[dg.AssetKey("raw_readings")],
                                                     tags=request.tags)
                self.reports.append(run_report(result, "raw_readings"))
        return requests


def import_models_fitted_on(automation: Automation, windows: pd.DataFrame) -> dict[str, str]:
    """Run ``model_import_job`` on pickled scaler + SVM pipelines fitted on each series' windows;
    the versions it made current."""
    import pickle
    import tempfile
    from pathlib import Path

    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import OneClassSVM

    folder = Path(tempfile.mkdtemp(prefix="models-"))
    for (device, sensor), rows in windows.groupby(["device", "sensor"]):
        pipeline = Pipeline([("scaler", StandardScaler()), ("svm", OneClassSVM(nu=0.001, gamma=0.01))])
        (folder / f"model_{device}_{sensor}.pkl").write_bytes(pickle.dumps(pipeline.fit(rows[["value"]].to_numpy())))
    result = automation.defs.resolve_job_def("model_import_job").execute_in_process(
        instance=automation.instance, run_config={"ops": {"import_model_files": {"config": {"directory": str(folder)}}}})
    return result.output_for_node("import_model_files").versions


def publish(defs, readings: pd.DataFrame, extra_bodies=()) -> None:
    defs.resources["events"].publish([*readings_to_event_bodies(readings), *extra_bodies])


@pytest.fixture
def automation(bscore_home, monkeypatch):
    monkeypatch.setenv("BSCORE_START", "2026-02-28T00:00")
    monkeypatch.setenv("BSCORE_RETRAINING_CRON", "30 * * * *")
    monkeypatch.setenv("BSCORE_TRAINING_HOURS", "3")
    from definitions import build_defs

    with dg.instance_for_test() as instance:
        yield Automation(build_defs(Settings.from_env()), instance)


def test_conditions_ingest_score_retrain_and_reopen_late_hours(automation):
    defs, sql = automation.defs, automation.defs.resources["sql"]
    clean = simulate_readings(2, 2, DAY, 2, anomaly_rate=0.0, seed=3)
    spiky = simulate_readings(2, 2, DAY + 2 * HOUR, 1, anomaly_rate=0.01, seed=4)
    open_hour = simulate_readings(2, 2, DAY + 3 * HOUR, 0.01, anomaly_rate=0.0, seed=5)
    bad = ['{"ts": "2026-03-01T01:00:00", "device": "1", "sensor": "1", "value": "NaN"}', "not json"]
    publish(defs, pd.concat([clean, spiky, open_hour], ignore_index=True), bad)

    # Before the lateness minute nothing is ingested; at it, every closed hour of the look-back.
    assert not any(automation.tick(DAY + 3 * HOUR + pd.Timedelta(minutes=2)).values())
    requested = automation.tick(DAY + 3 * HOUR + pd.Timedelta(minutes=6))
    look_back = {hour_key(DAY + HOUR * n) for n in range(-3, 3)}
    assert requested["raw_readings"] == requested["sensor_aggregates"] == look_back
    drained = next(r for r in automation.reports if r.job == "raw_readings")
    assert drained.check("no_dead_letters").metadata["events_dead_lettered"] == 2  # counted in the run's own check
    assert len(sql.read_sensor_values(DAY, DAY + 3 * HOUR)) == 2 * 2 * 720 * 3
    assert sql.window_stats(DAY + 3 * HOUR, DAY + 4 * HOUR) == (0, 0)  # the open hour waits

    # The fleet sensor registers devices and sensors; with no model anywhere yet, nothing is scored.
    automation.tick_sensor("fleet_partitions_sensor")
    requested = automation.tick(DAY + 3 * HOUR + pd.Timedelta(minutes=7))
    assert not requested["sensor_predictions"]

    # The retraining cron trains every device; the new models re-score the look-back's hours.
    requested = automation.tick(DAY + 3 * HOUR + pd.Timedelta(minutes=31))
    assert requested["device_models"] == {"1", "2"}
    trained = automation.reports[-1]
    assert trained.statuses == {"device_models.status=promoted": 2}
    requested = automation.tick(DAY + 3 * HOUR + pd.Timedelta(minutes=32))
    assert len(requested["sensor_predictions"]) == 6 * 2
    scored = automation.reports[-1]
    assert not scored.failed_error_checks
    assert len(sql.read_predictions(DAY, DAY + 3 * HOUR)) == 2 * 2 * 720 * 3
    assert not requested["device_verdicts"]  # not before the predictions are in
    requested = automation.tick(DAY + 3 * HOUR + pd.Timedelta(minutes=40))
    assert requested["device_verdicts"] == {hour_key(DAY + HOUR * n) for n in range(-3, 3)}
    assert not any(v for k, v in requested.items() if k != "device_verdicts")
    assert len(sql.read_device_verdicts(DAY, DAY + 3 * HOUR)) == 2 * 720 * 3
    assert not any(automation.tick(DAY + 3 * HOUR + pd.Timedelta(minutes=41)).values())  # nothing twice

    # `bscore models import` is a run recording device_models: the look-back is rescored with them.
    versions = import_models_fitted_on(automation, sql.read_sensor_values(DAY, DAY + 3 * HOUR))
    requested = automation.tick(DAY + 3 * HOUR + pd.Timedelta(minutes=42))
    assert len(requested["sensor_predictions"]) == 6 * 2
    rescored = sql.read_predictions(DAY, DAY + 3 * HOUR)
    assert rescored.groupby("device")["model_version"].unique().map(list).to_dict() == {
        d: [v] for d, v in versions.items()}
    assert automation.tick(DAY + 3 * HOUR + pd.Timedelta(minutes=43))["device_verdicts"] == {
        hour_key(DAY + HOUR * n) for n in range(-3, 3)}

    # A late reading for hour 01 is drained by the next hour's run; the observing sensor asks
    # for hour 01 again, which is then re-aggregated and re-scored.
    late = simulate_readings(2, 2, DAY + HOUR + pd.Timedelta(minutes=30, milliseconds=500), 0.01, seed=6)
    publish(defs, late)
    requested = automation.tick(DAY + 4 * HOUR + pd.Timedelta(minutes=6))
    assert requested["raw_readings"] == {hour_key(DAY + 3 * HOUR)}
    assert automation.reports[-2].check("no_dead_letters").metadata["late_readings"] == len(late)
    [request] = automation.tick_sensor("late_readings_sensor")
    assert request.tags["dagster/asset_partition_range_start"] == hour_key(DAY + HOUR)
    assert isinstance(automation.tick_sensor("late_readings_sensor"), dg.SkipReason)  # recorded again: no change
    requested = automation.tick(DAY + 4 * HOUR + pd.Timedelta(minutes=7))
    assert requested["sensor_aggregates"] == {hour_key(DAY + HOUR)}
    windows = sql.read_sensor_values(DAY + HOUR, DAY + 2 * HOUR)
    assert windows["readings"].sum() == 2 * 2 * 3600 + len(late)
    requested = automation.tick(DAY + 4 * HOUR + pd.Timedelta(minutes=8))
    assert {k.split("|")[0] for k in requested["sensor_predictions"]} == {hour_key(DAY + HOUR)}
    rescored = sql.read_predictions(DAY + HOUR, DAY + 2 * HOUR).merge(windows, on=["device", "sensor", "ts"])
    assert len(rescored) == 2 * 2 * 720 and (rescored["value_x"] == rescored["value_y"]).all()
    assert hour_key(DAY + HOUR) in automation.tick(DAY + 4 * HOUR + pd.Timedelta(minutes=9))["device_verdicts"]


def test_every_asset_has_its_condition_and_scoring_has_a_freshness_deadline(bscore_home, monkeypatch):
    from definitions import build_defs

    graph = build_defs(Settings.from_env()).resolve_asset_graph()
    labels = {key.to_user_string(): graph.get(key).automation_condition.get_label() for key in graph.get_all_asset_keys()}
    assert labels == {"raw_readings": "ready hour not recorded", "sensor_aggregates": "raw readings recorded",
                      "sensor_predictions": "aggregates or models changed",
                      "device_verdicts": "predictions materialized",
                      "device_models": "retraining cron 30 0 * * *"}
    policy = graph.get(dg.AssetKey("sensor_predictions")).freshness_policy
    assert policy.deadline_cron == "30 * * * *"
    monkeypatch.setenv("BSCORE_ALLOWED_LATENESS_MINUTES", "75")
    with pytest.raises(ValueError, match="BSCORE_ALLOWED_LATENESS_MINUTES='75' must be .* \(0..59\)"):
        build_defs(Settings.from_env())
