"""Bad input at ingestion: each bad event dead-lettered with its reason, good ones kept,
counts in run metadata and in the ``no_dead_letters`` check."""

import json

import pandas as pd

from tests.assets.conftest import TRAIN_START

GOOD_TS = (TRAIN_START + pd.Timedelta(minutes=10)).isoformat()
BAD_EVENTS = {
    "malformed JSON": '{"ts": "2026-03-01T00:10:00", "device": "1"',
    "missing field": json.dumps({"ts": GOOD_TS, "device": "1", "value": 1.0}),
    "bad value": json.dumps({"ts": GOOD_TS, "device": "1", "sensor": "1", "value": "hot"}),
    "unknown field": json.dumps({"ts": GOOD_TS, "device": "1", "sensor": "1", "value": 1.0, "unit": "C"}),
    "ts out of range": json.dumps({"ts": "2099-01-01T00:00:00", "device": "1", "sensor": "1", "value": 1.0}),
    "bad ts": json.dumps({"ts": "soon", "device": "1", "sensor": "1", "value": 1.0}),
    "oversized": json.dumps({"ts": GOOD_TS, "device": "1", "sensor": "1", "value": 1.0, "x": "y" * 10_000}),
    "bad device": json.dumps({"ts": GOOD_TS, "device": None, "sensor": "1", "value": 1.0}),
}


def good_events(n):
    return [json.dumps({"ts": (TRAIN_START + pd.Timedelta(seconds=i + 1)).isoformat(), "device": "1",
                        "sensor": "1", "value": 10.0 + i % 5}) for i in range(n)]


def test_bad_events_are_dead_lettered_with_reasons_and_good_ones_kept(platform):
    events = platform.resources["events"]
    bodies = good_events(50)
    bodies[10:10] = list(BAD_EVENTS.values())
    bodies.append('{"ts": "2026-03-01T00:20:00", "device": "1", "sensor": "1", "value": NaN}')
    events.publish(bodies)
    result = platform.ingest_hours(TRAIN_START, TRAIN_START)
    check = result.check("no_dead_letters")
    assert check.metadata["readings_stored"] == 50
    assert check.metadata["events_dead_lettered"] == len(BAD_EVENTS) + 1
    assert not check.passed and check.severity == "WARN"
    assert result.totals["raw_readings.readings"] == 50
    reasons = check.metadata["reasons"]
    assert reasons == {**{name: 1 for name in BAD_EVENTS}, "bad value": 2}
    blob = platform.resources["blob"]
    dead = pd.concat([blob.read_parquet(k) for k in blob.list("deadletter/")])
    assert set(dead["body"]) >= set(BAD_EVENTS.values()) - {BAD_EVENTS["oversized"]}
    windows = platform.resources["sql"].read_sensor_values(TRAIN_START, TRAIN_START + pd.Timedelta(hours=1))
    assert windows["readings"].sum() == 50
