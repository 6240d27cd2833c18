"""Which sensor ids may become partitions: declared ones, or ones seen from enough devices."""

import numpy as np
import pytest

from bscore_assets.settings import Settings
from scoring.fleet import admitted_sensors, parse_sensor_list, undeclared_sensor_mask, undeclared_sensor_reason


def test_a_sensor_needs_enough_devices():
    counts = {"1": 3, "2": 2, "junk-1": 1, "junk-2": 1}

    admitted, held = admitted_sensors(counts, fleet_size=3, min_devices=2)

    assert admitted == ["1", "2"] and sorted(held) == ["junk-1", "junk-2"]
    assert "seen from 1 device(s), fewer than 2 (BSCORE_SENSOR_MIN_DEVICES" in held["junk-1"]


@pytest.mark.parametrize("fleet_size, min_devices, expected", [(1, 2, ["1", "2"]), (2, 5, ["1"]), (3, 1, ["1", "2"])])
def test_the_threshold_is_capped_at_the_fleet_size(fleet_size, min_devices, expected):
    counts = {"1": fleet_size, "2": 1}

    assert admitted_sensors(counts, fleet_size, min_devices)[0] == expected


def test_an_allow_list_admits_exactly_the_declared_sensors():
    admitted, held = admitted_sensors({"1": 1, "2": 5, "x": 9}, fleet_size=9, min_devices=2, declared=("1", "2"))

    assert admitted == ["1", "2"] and list(held) == ["x"]
    assert held["x"] == "undeclared sensor 'x': not in BSCORE_SENSORS (1, 2)"


def test_undeclared_sensor_reason_and_mask():
    assert undeclared_sensor_reason("7", ()) is None and undeclared_sensor_reason("7", ("7",)) is None
    many = [f"s{i:02d}" for i in range(12)]
    assert undeclared_sensor_reason("x", many).endswith("s09, ... (12 in all))")
    np.testing.assert_array_equal(undeclared_sensor_mask(["1", "x", "2"], {"1", "2"}), [False, True, False])
    np.testing.assert_array_equal(undeclared_sensor_mask(["1", "x"], ()), [False, False])


def test_settings_read_the_sensor_rules(tmp_path):
    settings = Settings.from_env({"BSCORE_HOME": str(tmp_path), "BSCORE_SENSORS": " 1, 2 ,flow_rate,,",
                                  "BSCORE_SENSOR_MIN_DEVICES": "3"})

    assert settings.sensors == ("1", "2", "flow_rate") and settings.sensor_min_devices == 3
    assert Settings.from_env({"BSCORE_HOME": str(tmp_path)}).sensor_min_devices == 2
    assert parse_sensor_list(None) == ()
    with pytest.raises(ValueError, match="BSCORE_SENSOR_MIN_DEVICES='0' is not a whole number of at least 1"):
        Settings.from_env({"BSCORE_HOME": str(tmp_path), "BSCORE_SENSOR_MIN_DEVICES": "0"})


def test_undeclared_mask_of_an_arrow_column_equals_the_pandas_one():
    import pyarrow as pa

    sensors = ["1", "x", "2", "1", "y"]
    column = pa.chunked_array([pa.array(sensors[:2]), pa.array(sensors[2:])])
    expected = undeclared_sensor_mask(sensors, {"1", "2"})
    np.testing.assert_array_equal(undeclared_sensor_mask(column, {"1", "2"}), expected)
    np.testing.assert_array_equal(undeclared_sensor_mask(column, ()), [False] * 5)


def test_a_sensor_of_one_device_is_admitted_when_its_device_sends_few_sensor_ids():
    # Issue 19, item 1: devices 'a_b' (sensor 'c') and 'a' (sensor 'b_c') share no sensor.
    counts = {"c": 1, "b_c": 1}

    admitted, held = admitted_sensors(counts, fleet_size=2, min_devices=2,
                                      fewest_ids_of_a_sender={"c": 1, "b_c": 1}, max_device_sensors=64)

    assert admitted == ["b_c", "c"] and held == {}


def test_a_device_sending_too_many_sensor_ids_gets_none_of_its_own_admitted_and_they_are_named():
    counts = {"1": 3, **{f"junk-{i}": 1 for i in range(300)}}
    fewest = {"1": 5, **{f"junk-{i}": 301 for i in range(300)}}

    admitted, held = admitted_sensors(counts, fleet_size=3, min_devices=2,
                                      fewest_ids_of_a_sender=fewest, max_device_sensors=64)

    assert admitted == ["1"] and len(held) == 300
    assert held["junk-7"] == ("sensor 'junk-7' seen from 1 device(s), fewer than 2 (BSCORE_SENSOR_MIN_DEVICES), "
                              "and every device sending it sends 301 sensor ids or more, more than 64 "
                              "(BSCORE_DEVICE_MAX_SENSORS); declare it in BSCORE_SENSORS to score it")


def test_settings_read_the_device_sensor_bound(tmp_path):
    assert Settings.from_env({"BSCORE_HOME": str(tmp_path)}).device_max_sensors == 64
    assert Settings.from_env({"BSCORE_HOME": str(tmp_path), "BSCORE_DEVICE_MAX_SENSORS": "9"}).device_max_sensors == 9
