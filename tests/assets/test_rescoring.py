"""An hour is scored again only when what it is scored from changed: its aggregates (new raw
readings) or a device's current model. Otherwise the run reports it from its manifests, writes
nothing, and says so; SQL that lost the hour's rows is scored again."""

import pandas as pd

from bscore_assets.hours import latest_partition_metadata
from bscore_assets.partitions import hour_sensor_key
from scoring.model_format import ModelBundle
from scoring.model_store import current_version, load_bundle, save_bundle
from scoring.simulate import simulate_readings
from tests.assets.conftest import SCORE_START, land

HOUR = pd.Timedelta(hours=1)
SENSORS = [str(s) for s in range(1, 6)]


def scored_flags(report) -> tuple[int, int]:
    return (report.statuses.get("sensor_predictions.scored=True", 0),
            report.statuses.get("sensor_predictions.scored=False", 0))


def snapshot(platform):
    sql, blob = platform.resources["sql"], platform.resources["blob"]
    rows = sql.read_predictions(SCORE_START, SCORE_START + HOUR).sort_values(["device", "sensor", "ts"])
    return rows.reset_index(drop=True), sorted(blob.list("predictions/"))


def test_an_unchanged_hour_is_reported_not_scored_and_changes_are_scored(scored):
    platform, (_, first) = scored  # the run that scored the hour
    assert scored_flags(first) == (5, 0)
    rows, keys = snapshot(platform)

    again = platform.score(SCORE_START, SCORE_START)
    assert again[0].statuses.get("sensor_aggregates.aggregated=False") == 1
    report = again[-1]
    assert scored_flags(report) == (0, 5)
    # The same totals and checks as the run that scored it, from the manifests.
    assert report.totals == first.totals
    assert [(c.name, c.passed) for c in report.checks] == [(c.name, c.passed) for c in first.checks]
    after_rows, after_keys = snapshot(platform)
    pd.testing.assert_frame_equal(after_rows, rows)
    assert after_keys == keys  # no part written or removed
    metadata = latest_partition_metadata(platform.instance, "sensor_predictions",
                                         [hour_sensor_key(SCORE_START, s) for s in SENSORS])
    assert {m["scored"] for m in metadata.values()} == {False}

    # A device's new current model: the hour is scored again, with it.
    blob = platform.resources["blob"]
    old = load_bundle(blob, "2", current_version(blob, "2"))
    save_bundle(blob, ModelBundle("2", "v-replaced", old.models))
    report = platform.score(SCORE_START, SCORE_START)[-1]
    assert scored_flags(report) == (5, 0)
    rows, _ = snapshot(platform)
    assert set(rows.loc[rows["device"] == "2", "model_version"]) == {"v-replaced"}

    # SQL lost the hour's rows of a sensor: scored again although nothing else changed.
    platform.resources["sql"].replace_predictions(rows.iloc[0:0], SCORE_START, SCORE_START + HOUR, ["3"])
    report = platform.score(SCORE_START, SCORE_START)[-1]
    assert scored_flags(report) == (5, 0)
    pd.testing.assert_frame_equal(snapshot(platform)[0], rows)

    # Late readings (of a device new to the fleet) change the hour's aggregates: scored again.
    late = simulate_readings(1, 1, SCORE_START, 1, anomaly_rate=0.0, seed=99).head(3)
    late["device"] = "4"
    land(platform, late)
    reports = platform.score(SCORE_START, SCORE_START)
    assert reports[0].statuses.get("sensor_aggregates.aggregated=True") == 1
    assert scored_flags(reports[-1]) == (5, 0)
