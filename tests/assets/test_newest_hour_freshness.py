"""Freshness follows the newest hour's partitions (issue 19, item 10): rescoring older hours keeps
``sensor_predictions``' latest materialization recent, yet a newest hour never scored is overdue."""

import dagster as dg
import pandas as pd

from bscore_assets.partitions import hour_sensor_key, sensor_partitions_def
from bscore_assets.predictions.freshness import NEWEST_HOUR_CHECK, newest_due_hour, newest_hour_scored_result
from bscore_assets.settings import Settings

NOW = pd.Timestamp("2026-03-01T05:40")  # 04:00-05:00 closed at 05:00; its deadline (minute 30) passed


def scored(instance: dg.DagsterInstance, hour: pd.Timestamp, sensor: str) -> None:
    instance.report_runless_asset_event(dg.AssetMaterialization("sensor_predictions",
                                                                partition=hour_sensor_key(hour, sensor)))


def test_the_newest_due_hour_is_the_last_whose_deadline_passed():
    assert newest_due_hour(NOW, 30) == pd.Timestamp("2026-03-01T04:00")
    assert newest_due_hour(pd.Timestamp("2026-03-01T05:29"), 30) == pd.Timestamp("2026-03-01T03:00")


def test_a_newest_hour_never_scored_is_overdue_although_older_hours_were_just_rescored(bscore_home):
    settings = Settings.from_env()
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(sensor_partitions_def.name, ["1", "2"])
        for hour in pd.date_range("2026-03-01T00:00", "2026-03-01T03:00", freq="h"):
            for sensor in ("1", "2"):
                scored(instance, hour, sensor)  # rescores of older hours: the latest event is recent
        scored(instance, pd.Timestamp("2026-03-01T04:00"), "1")

        result = newest_hour_scored_result(instance, NOW, settings)

        assert not result.passed and result.severity == dg.AssetCheckSeverity.ERROR
        assert result.metadata["hour"].value == "2026-03-01-04:00"
        assert result.metadata["unscored_sensors"].value == "2"
        assert result.description == ("hour 2026-03-01-04:00 is overdue: 1 of 2 sensor(s) not scored by its "
                                       "deadline 2026-03-01T05:30 (BSCORE_SCORING_DEADLINE_MINUTES=30): 2")

        scored(instance, pd.Timestamp("2026-03-01T04:00"), "2")
        assert newest_hour_scored_result(instance, NOW, settings).passed


def test_the_freshness_sensor_runs_the_check_once_per_due_hour(bscore_home):
    from definitions import build_defs

    defs = build_defs(Settings.from_env())
    sensor = defs.get_sensor_def("newest_hour_freshness_sensor")
    with dg.instance_for_test() as instance:
        requests = sensor(dg.build_sensor_context(instance=instance, definitions=defs))

    due = newest_due_hour(pd.Timestamp.now("UTC").tz_localize(None), 30)
    assert [r.run_key for r in requests] == [f"newest-hour-{due:%Y-%m-%d-%H:%M}"]
    assert list(requests[0].asset_check_keys) == [NEWEST_HOUR_CHECK]


def test_the_check_runs_in_a_run_of_its_own_and_fails_on_an_overdue_hour(bscore_home):
    from definitions import build_defs

    defs = build_defs(Settings.from_env())
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(sensor_partitions_def.name, ["1"])
        job = defs.resolve_implicit_global_asset_job_def().get_subset(
            asset_selection=set(), asset_check_selection={NEWEST_HOUR_CHECK})
        result = job.execute_in_process(instance=instance, raise_on_error=False)

    evaluations = result.get_asset_check_evaluations()
    assert [e.asset_check_key for e in evaluations] == [NEWEST_HOUR_CHECK] and not evaluations[0].passed
    assert "is overdue: 1 of 1 sensor(s) not scored" in evaluations[0].description


def test_alongside_a_scoring_run_an_overdue_hour_is_a_warning(bscore_home):
    """A backfill of older hours must not fail for the newest hour it was not asked to score."""
    settings = Settings.from_env()
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(sensor_partitions_def.name, ["1"])
        result = newest_hour_scored_result(instance, NOW, settings, dg.AssetCheckSeverity.WARN)

    assert not result.passed and result.severity == dg.AssetCheckSeverity.WARN
