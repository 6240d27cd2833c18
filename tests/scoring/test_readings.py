"""Parsing event bodies in either field naming; every bad event rejected with its reason."""

import json

import pandas as pd
import pytest

from scoring.readings import parse_event_bodies, read_readings_file, readings_to_event_bodies

NOW = pd.Timestamp("2026-06-01T12:00")


def test_both_field_namings_parse_to_the_same_reading():
    bodies = [
        json.dumps({"ts": "2026-06-01T10:00:05Z", "device": "1", "sensor": "2", "value": 10.5}),
        json.dumps({"TS": "2026-06-01 10:00:05", "Device": 1, "Tag": 2, "Value": "10.5"}),
        json.dumps({"TS": "2026-06-01T10:00:05", "Device": "1", "Sensor": "2", "Value": 10.5}),
    ]
    parsed = parse_event_bodies(bodies, now=NOW)
    assert parsed.rejected.empty
    assert parsed.readings.drop_duplicates().shape == (1, 4)
    row = parsed.readings.iloc[0]
    assert (row["ts"], row["device"], row["sensor"], row["value"]) == (pd.Timestamp("2026-06-01T10:00:05"), "1", "2", 10.5)


@pytest.mark.parametrize(
    "body, reason",
    [
        ('{"ts": "2026-06-01T10:00:00", "device": "1", "sensor": "1", "value": 1', "malformed JSON"),
        ('{"ts": "2026-06-01T10:00:00", "device": "1", "value": 1}', "missing field: sensor"),
        ('{"ts": "2026-06-01T10:00:00", "device": "1", "sensor": "1", "value": "abc"}', "is not a number"),
        ('{"ts": "2026-06-01T10:00:00", "device": "1", "sensor": "1", "value": NaN}', "not finite"),
        ('{"ts": "2026-06-01T10:00:00", "device": "1", "sensor": "1", "value": Infinity}', "not finite"),
        ('{"ts": "2099-01-01T00:00:00", "device": "1", "sensor": "1", "value": 1}', "is outside"),
        ('{"ts": "1990-01-01T00:00:00", "device": "1", "sensor": "1", "value": 1}', "is outside"),
        ('{"ts": "yesterday", "device": "1", "sensor": "1", "value": 1}', "not an ISO-8601 time"),
        ('{"ts": "2026-06-01T10:00:00", "device": "1", "sensor": "1", "value": 1, "x": 2}', "unknown field: 'x'"),
        ('{"ts": "2026-06-01T10:00:00", "device": true, "sensor": "1", "value": 1}', "bad device: must be"),
        ('[1, 2]', "not a JSON object"),
        ('{"ts": "2026-06-01T10:00:00", "device": "../x", "sensor": "1", "value": 1}', "bad device"),
        ('{"ts": "2026-06-01T10:00:00", "device": "a/b", "sensor": "1", "value": 1}', "bad device"),
        ('{"ts": "2026-06-01T10:00:00", "device": [1, 2], "sensor": "1", "value": 1}', "bad device"),
        ('{"ts": "now", "device": "1", "sensor": "1", "value": 1}', "bad ts"),
        ('{"ts": "2026-06-01T10:00:00", "device": "1", "sensor": "1", "value": 1' + "0" * 400 + '}', "malformed JSON"),
        ("[" * 2000 + "]" * 2000, "malformed JSON"),
        ('{"ts": "2026-06-01T10:00:00", "device": "1", "sensor": "1", "value": 1, "pad": "' + "x" * 5000 + '"}',
         "more than"),
    ],
)
def test_bad_event_is_rejected_with_reason_and_good_ones_kept(body, reason):
    good = json.dumps({"ts": "2026-06-01T10:00:00", "device": "1", "sensor": "1", "value": 1.0})
    parsed = parse_event_bodies([good, body, good], now=NOW)
    assert len(parsed.readings) == 2
    assert len(parsed.rejected) == 1
    assert reason in parsed.rejected["reason"].iloc[0]


def test_serialized_readings_parse_back_exactly():
    readings = pd.DataFrame(
        {"ts": pd.to_datetime(["2026-06-01T10:00:00.250"]).astype("datetime64[ns]"), "device": ["7"], "sensor": ["3"],
         "value": [1.125]}
    )
    parsed = parse_event_bodies(readings_to_event_bodies(readings), now=NOW)
    pd.testing.assert_frame_equal(parsed.readings, readings)


def test_csv_with_wrong_header_names_the_file(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("time,dev,val\n2026-06-01,1,2\n")
    with pytest.raises(ValueError, match="bad.csv.*header"):
        read_readings_file(path)


def test_reference_csv_reads_as_events(reference_dir):
    bodies = read_readings_file(reference_dir / "sensor_data.csv")
    parsed = parse_event_bodies(bodies, now=NOW)
    assert len(parsed.readings) == 17768 and parsed.rejected.empty
    assert sorted(parsed.readings["sensor"].unique()) == ["1", "2", "3", "4", "5"]


# Issue 19, item 11: ISO-8601's leap second and end-of-day midnight are readings' times too.

@pytest.mark.parametrize("ts, expected", [
    ("2026-05-30T24:00:00", "2026-05-31T00:00:00"),  # the end of a day is the next day's start
    ("2026-05-31T24:00:00Z", "2026-06-01T00:00:00"),
    ("2026-05-31 24:00:00.000+02:00", "2026-05-31T22:00:00"),
    ("2026-05-31T23:59:60Z", "2026-05-31T23:59:59.999999999"),  # kept inside its second's minute and hour
    ("2026-05-31T23:59:60.5", "2026-05-31T23:59:59.999999999"),
    ("2026-06-01T01:59:60+02:00", "2026-05-31T23:59:59.999999999"),  # the leap second in another zone
])
def test_midnight_24_00_and_the_leap_second_are_accepted(ts, expected):
    body = json.dumps({"ts": ts, "device": "1", "sensor": "1", "value": 1.0})

    parsed = parse_event_bodies([body] * 1200, now=NOW)  # the columnar path, falling back per line
    one = parse_event_bodies([body], now=NOW)  # the row-wise path

    assert parsed.rejected.empty and one.rejected.empty
    assert set(parsed.readings["ts"]) == {pd.Timestamp(expected)} and one.readings["ts"][0] == pd.Timestamp(expected)


@pytest.mark.parametrize("ts", ["2026-06-01T24:00:01", "2026-06-01T24:30:00", "2026-06-01T23:58:60",
                                "2026-06-01T23:59:61", "2026-06-01T25:00:00"])
def test_other_out_of_range_times_are_still_refused(ts):
    body = json.dumps({"ts": ts, "device": "1", "sensor": "1", "value": 1.0})

    assert parse_event_bodies([body], now=NOW).rejected["reason"].str.startswith("bad ts").all()
