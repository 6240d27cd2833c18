"""``build_defs(settings)`` builds from the settings it is given, and the code location reads
the environment each time Dagster loads it: no module is imported again to change a setting."""

import dataclasses
import warnings

import dagster as dg
import pandas as pd
import pytest

from bscore_assets.definitions import build_defs
from bscore_assets.settings import Settings

HOURLY = ("raw_readings", "sensor_aggregates", "device_verdicts")


def first_hours(defs: dg.Definitions) -> dict[str, str]:
    """The first hour of each hour-partitioned asset (the hour dimension of the predictions)."""
    graph = defs.resolve_asset_graph()
    found = {name: graph.get(dg.AssetKey(name)).partitions_def.get_first_partition_key() for name in HOURLY}
    predictions = graph.get(dg.AssetKey("sensor_predictions")).partitions_def
    found["sensor_predictions"] = predictions.get_partitions_def_for_dimension("hour").get_first_partition_key()
    return found


@pytest.mark.parametrize("aggregation", ["local", "asa"])
def test_two_starts_in_one_process_are_each_honoured(bscore_home, aggregation):
    settings = dataclasses.replace(Settings.from_env(), aggregation=aggregation)
    early = build_defs(dataclasses.replace(settings, start=pd.Timestamp("2020-01-01T00:00")))
    late = build_defs(dataclasses.replace(settings, start=pd.Timestamp("2026-03-01T05:00")))
    assert set(first_hours(early).values()) == {"2020-01-01-00:00"}
    assert set(first_hours(late).values()) == {"2026-03-01-05:00"}
    assert set(first_hours(early).values()) == {"2020-01-01-00:00"}  # the later build changed nothing built before


def test_every_setting_reaches_the_definitions_it_shapes(bscore_home, tmp_path):
    settings = dataclasses.replace(Settings.from_env(), retraining_cron="15 3 * * *", scoring_deadline_minutes=45,
                                   sql_url=f"sqlite:///{tmp_path / 'other.db'}", blob_url=str(tmp_path / "blobs"),
                                   training_hours=7, detector="svm")
    defs = build_defs(settings)
    graph = defs.resolve_asset_graph()
    assert graph.get(dg.AssetKey("device_models")).automation_condition.get_label() == "retraining cron 15 3 * * *"
    assert graph.get(dg.AssetKey("sensor_predictions")).freshness_policy.deadline_cron == "45 * * * *"
    assert defs.resources["sql"].url == settings.sql_url and defs.resources["blob"].root == settings.blob_url
    assert (defs.resources["pipeline"].training_hours, defs.resources["pipeline"].detector) == (7, "svm")


def test_the_code_location_reads_the_environment_at_each_load(bscore_home, monkeypatch):
    import definitions

    monkeypatch.setenv("BSCORE_START", "2021-06-01T00:00")
    assert set(first_hours(definitions.defs()).values()) == {"2021-06-01-00:00"}
    monkeypatch.setenv("BSCORE_START", "2024-02-03T04:00")
    assert set(first_hours(definitions.defs()).values()) == {"2024-02-03-04:00"}


def test_building_the_definitions_warns_of_no_beta_api_of_ours(bscore_home):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        filters = list(warnings.filters)
        build_defs(Settings.from_env())
        assert warnings.filters == filters  # silenced while building ours only, not for the caller
    assert [str(w.message) for w in caught if issubclass(w.category, dg.BetaWarning)] == []
