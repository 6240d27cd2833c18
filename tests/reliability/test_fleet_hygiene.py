"""Junk sensor ids from one device do not become partitions (issue 11, case 10): a sensor id is
a partition only once declared (BSCORE_SENSORS) or seen from BSCORE_SENSOR_MIN_DEVICES devices."""

import pandas as pd

from bscore_assets.partitions import sensor_partitions_def
from scoring.simulate import simulate_readings
from tests.assets.conftest import SCORE_START, TRAIN_START, land

HOUR = pd.Timedelta(hours=1)
JUNK = 300


def junk_readings(device: str, start: pd.Timestamp) -> pd.DataFrame:
    """One reading of each of ``JUNK`` made-up sensor ids, every 10 s of the hour."""
    ts = start + pd.to_timedelta(range(JUNK), unit="s") * 10 + pd.Timedelta(seconds=1)
    return pd.DataFrame({"ts": ts, "device": device, "sensor": [f"junk-{i}" for i in range(JUNK)], "value": 1.0})


def sensor_partitions(platform) -> list[str]:
    return sorted(platform.instance.get_dynamic_partitions(sensor_partitions_def.name))


def test_junk_sensor_ids_from_one_device_become_no_partitions(platform, simulated):
    land(platform, junk_readings("2", SCORE_START))
    platform.train(None, TRAIN_START, TRAIN_START)

    *_, result = platform.score(SCORE_START, SCORE_START)

    assert sensor_partitions(platform) == ["1", "2", "3", "4", "5"]
    written = platform.resources["blob"].list("predictions/")
    partitions = [key for key in written if key.endswith("/_manifest.json")]
    assert len(partitions) == 5 and all("junk" not in key for key in written)
    assert result.success
    # The junk is kept (aggregated), just not made a partition: nothing accepted is lost.
    windows = platform.resources["sql"].read_sensor_values(SCORE_START, SCORE_START + HOUR)
    assert windows["sensor"].str.startswith("junk-").sum() == JUNK


def test_a_one_device_fleet_admits_its_sensors(platform):
    land(platform, simulate_readings(1, 3, TRAIN_START, 1, anomaly_rate=0.0, seed=3))

    platform.ingest_hours(TRAIN_START, TRAIN_START)

    assert sensor_partitions(platform) == ["1", "2", "3"]


def test_an_allow_list_admits_only_declared_sensors_and_dead_letters_the_rest(platform, simulated, monkeypatch):
    from definitions import build_defs
    from bscore_assets.operations import Operations
    from bscore_assets.settings import Settings

    monkeypatch.setenv("BSCORE_SENSORS", "1,2,5")
    settings = Settings.from_env()
    declared = Operations(settings, build_defs(settings), platform.instance)
    land(declared, junk_readings("1", TRAIN_START).assign(device=lambda f: f.index.map(lambda i: str(1 + i % 3))))

    report = declared.ingest_hours(TRAIN_START, TRAIN_START)

    assert sensor_partitions(declared) == ["1", "2", "5"]
    # Readings of undeclared sensors (3, 4 and the junk) are dead-lettered with their reason.
    reasons = report.check("no_dead_letters").metadata["reasons"]
    assert reasons == {"undeclared sensor": 2 * 3 * 2 * 3600 + JUNK}  # sensors 3, 4 of 3 devices, 2 hours
    windows = declared.resources["sql"].read_sensor_values(TRAIN_START, TRAIN_START + HOUR)
    assert sorted(windows["sensor"].unique()) == ["1", "2", "5"]


def test_a_fleet_with_disjoint_sensors_is_scored_completely(platform):
    """Issue 19, item 1: each device type with its own sensors is the common case; a sensor sent
    by one device whose sensor ids are few is scored."""
    from scoring.simulate import simulate_readings as sim

    def one(device, sensor, start, seed):
        return sim(1, 1, start, 1, anomaly_rate=0.0, seed=seed).assign(device=device, sensor=sensor)

    land(platform, pd.concat([one("a_b", "c", TRAIN_START, 1), one("a", "b_c", TRAIN_START, 2),
                              one("a_b", "c", SCORE_START, 3), one("a", "b_c", SCORE_START, 4)], ignore_index=True))
    platform.train(None, TRAIN_START, TRAIN_START)

    *_, result = platform.score(SCORE_START, SCORE_START)

    assert result.success and sensor_partitions(platform) == ["b_c", "c"]
    predictions = platform.resources["sql"].read_predictions(SCORE_START, SCORE_START + HOUR)
    assert len(predictions) == 2 * 720
    assert sorted(map(tuple, predictions[["device", "sensor"]].drop_duplicates().to_numpy())) == [("a", "b_c"), ("a_b", "c")]


def test_score_names_the_held_back_sensors_when_none_is_a_partition(platform, monkeypatch):
    """The message says the windows exist and why their sensors are not scored."""
    import pytest
    from definitions import build_defs
    from bscore_assets.operations import Operations
    from bscore_assets.settings import Settings

    monkeypatch.setenv("BSCORE_DEVICE_MAX_SENSORS", "10")
    settings = Settings.from_env()
    guarded = Operations(settings, build_defs(settings), platform.instance)
    land(guarded, pd.concat([junk_readings("1", TRAIN_START), junk_readings("2", TRAIN_START).assign(sensor=lambda f: "other-" + f["sensor"])]))

    with pytest.raises(ValueError, match=r"windows exist, but none of their sensors is admitted as a partition, "
                                         r"so nothing in 2026-03-01-00:00\.\.2026-03-01-00:00 can be scored: "
                                         r"sensor 'junk-0' .*BSCORE_DEVICE_MAX_SENSORS"):
        guarded.score(TRAIN_START, TRAIN_START)


def test_the_fleet_sensor_names_the_held_back_sensor_ids(platform, simulated):
    import dagster as dg

    land(platform, junk_readings("2", SCORE_START))
    platform.ingest_hours(TRAIN_START, SCORE_START)
    sensor = platform.defs.get_sensor_def("fleet_partitions_sensor")

    result = sensor(dg.build_sensor_context(instance=platform.instance, resources={"sql": platform.resources["sql"]}))

    assert "sensor ids held back: junk-0, junk-1, junk-10" in result.skip_reason.skip_message
    assert f"({JUNK} in all)" in result.skip_reason.skip_message
