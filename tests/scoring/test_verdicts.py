"""The device vote: hand-made predictions whose verdicts are known."""

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from scoring.verdicts import (VERDICT_COLUMNS, device_verdicts, parse_contributions, parse_flagged_sensors,
                              verdict_summary)

T1, T2 = pd.Timestamp("2026-01-01 00:00:05"), pd.Timestamp("2026-01-01 00:00:10")


def predictions(rows) -> pd.DataFrame:
    """(ts, device, sensor, is_anomaly) tuples as predictions with scores and versions."""
    frame = pd.DataFrame(rows, columns=["ts", "device", "sensor", "is_anomaly"])
    frame["value"], frame["score"], frame["model_version"] = 1.0, 0.5, "v1"
    return frame[["ts", "device", "sensor", "value", "score", "is_anomaly", "model_version"]]


FLEET = predictions([
    (T1, "d1", "s2", True), (T1, "d1", "s1", False), (T1, "d1", "s3", True),
    (T2, "d1", "s1", False), (T2, "d1", "s2", False), (T2, "d1", "s3", True),
    (T1, "d2", "s1", False), (T1, "d2", "s2", False),
    (T2, "d2", "s3", True),  # d2 has one sensor scored at T2
])


VOTE_COLUMNS = VERDICT_COLUMNS[:6]  # what the vote decides; method, score, contributions are tested on their own


def as_rows(verdicts: pa.Table) -> list[tuple]:
    frame = verdicts.to_pandas()
    return list(frame[VOTE_COLUMNS].itertuples(index=False, name=None))


def test_any_flagged_sensor_makes_the_device_window_anomalous():
    assert as_rows(device_verdicts(FLEET)) == [
        (T1, "d1", True, 3, 2, "s2,s3"),
        (T2, "d1", True, 3, 1, "s3"),
        (T1, "d2", False, 2, 0, ""),
        (T2, "d2", True, 1, 1, "s3"),
    ]


def test_min_sensors_two_needs_two_flags_and_ignores_missing_sensors():
    verdicts = as_rows(device_verdicts(FLEET, min_sensors=2))
    assert [row[2] for row in verdicts] == [True, False, False, False]
    # the contributions do not depend on the rule
    assert [row[3:] for row in verdicts] == [(3, 2, "s2,s3"), (3, 1, "s3"), (2, 0, ""), (1, 1, "s3")]


def test_the_vote_says_its_method_score_and_equal_shares_of_the_flagged_sensors():
    verdicts = device_verdicts(FLEET, min_sensors=2).to_pydict()
    assert verdicts["method"] == ["vote"] * 4
    assert verdicts["score"] == [1.0, 0.5, 0.0, 0.5]  # sensors flagged / min_sensors: anomalous at 1
    assert verdicts["contributions"] == ["s2=0.5,s3=0.5", "s3=1", "", "s3=1"]
    assert parse_contributions("s2=0.5,s3=0.5") == {"s2": 0.5, "s3": 0.5} and parse_contributions("") == {}


@pytest.mark.parametrize("min_sensors", [1, 2, 3, 4])
def test_verdict_equals_the_rule_on_random_predictions(min_sensors):
    rng = np.random.default_rng(min_sensors)
    rows = [(T1 + pd.Timedelta(seconds=5 * w), f"d{d}", f"s{s}", bool(rng.random() < 0.4))
            for d in range(7) for s in range(4) for w in range(30) if rng.random() < 0.8]
    frame = predictions(rows).sample(frac=1.0, random_state=1)  # in no particular order
    expected = []
    for (device, ts), group in sorted(frame.groupby(["device", "ts"]), key=lambda item: item[0]):
        flagged = sorted(group.loc[group["is_anomaly"], "sensor"])
        expected.append((ts, device, len(flagged) >= min_sensors, len(group), len(flagged), ",".join(flagged)))
    assert as_rows(device_verdicts(frame, min_sensors)) == expected
    arrow = pa.Table.from_pandas(frame, preserve_index=False)
    encoded = arrow.set_column(1, "device", arrow["device"].dictionary_encode())
    assert device_verdicts(encoded, min_sensors).equals(device_verdicts(frame, min_sensors))


def test_sensor_ids_sort_as_text_and_parse_back():
    frame = predictions([(T1, "d1", sensor, True) for sensor in ["temp-10", "temp-2", "a:1"]])
    (row,) = as_rows(device_verdicts(frame))
    assert row[5] == "a:1,temp-10,temp-2"
    assert parse_flagged_sensors(row[5]) == ["a:1", "temp-10", "temp-2"]
    assert parse_flagged_sensors("") == []


def test_no_predictions_give_no_verdicts_with_the_columns():
    verdicts = device_verdicts(predictions([]))
    assert len(verdicts) == 0 and verdicts.column_names == VERDICT_COLUMNS


def test_a_sensor_twice_in_a_window_is_refused():
    frame = predictions([(T1, "d1", "s1", True), (T1, "d1", "s1", False)])
    with pytest.raises(ValueError, match="more than once"):
        device_verdicts(frame)


@pytest.mark.parametrize("min_sensors", [0, -1, 1.5, True, "2"])
def test_min_sensors_must_be_a_whole_number_of_at_least_one(min_sensors):
    with pytest.raises(ValueError, match="min_sensors"):
        device_verdicts(FLEET, min_sensors)


def test_missing_column_and_missing_flag_are_named():
    with pytest.raises(ValueError, match="sensor"):
        device_verdicts(FLEET.drop(columns=["sensor"]))
    arrow = pa.Table.from_pandas(FLEET, preserve_index=False)
    holed = arrow.set_column(arrow.schema.get_field_index("is_anomaly"), "is_anomaly",
                             pa.array([None] + [True] * (len(FLEET) - 1), pa.bool_()))
    with pytest.raises(ValueError, match="is_anomaly"):
        device_verdicts(holed)


def test_summary_counts_anomalous_windows_per_device_and_flags_per_sensor():
    summary = verdict_summary(device_verdicts(FLEET))
    assert summary == {"device_windows": 4, "anomalous_device_windows": 3, "anomaly_rate": 0.75,
                       "top_devices": {"d1": 2, "d2": 1}, "top_sensors": {"s3": 3, "s2": 1}}
    quiet = verdict_summary(device_verdicts(FLEET, min_sensors=3))
    assert quiet == {"device_windows": 4, "anomalous_device_windows": 0, "anomaly_rate": 0.0,
                     "top_devices": {}, "top_sensors": {}}
    assert verdict_summary(device_verdicts(predictions([])))["anomaly_rate"] == 0.0
