"""Soak: a million simulated readings with 1% bad and 1% duplicated events through the local
path, and exact counts at the end: every good reading aggregated once, every bad one
dead-lettered with its reason."""

import json
import time

import numpy as np
import pandas as pd

from bscore_assets.storage import read_raw_hour
from scoring.readings import readings_to_event_bodies
from scoring.simulate import simulate_readings
from tests.assets.conftest import TRAIN_START

DEVICES, SENSORS, SECONDS = 20, 5, 10_000  # 1,000,000 readings
BAD_KINDS = {
    "malformed JSON": lambda i: '{"ts": "2026-03-01T00:00:01", "device": "1", ' + str(i),
    "missing field": lambda i: json.dumps({"ts": "2026-03-01T00:00:01", "device": str(i)}),
    "bad value": lambda i: json.dumps({"ts": "2026-03-01T00:00:01", "device": "1", "sensor": "1", "value": "NaN?"}),
    "ts out of range": lambda i: json.dumps({"ts": "2199-01-01T00:00:00", "device": "1", "sensor": "1", "value": i}),
    "unknown field": lambda i: json.dumps({"ts": "2026-03-01T00:00:01", "device": "1", "sensor": "1", "value": 1,
                                           "extra": i}),
}


def test_million_readings_with_bad_and_duplicate_events(platform):
    started = time.monotonic()
    readings = simulate_readings(DEVICES, SENSORS, TRAIN_START, SECONDS / 3600, 0.01, seed=3)
    assert len(readings) == 1_000_000
    bodies = readings_to_event_bodies(readings)
    rng = np.random.default_rng(4)
    n_bad = n_dup = len(bodies) // 100
    kinds = list(BAD_KINDS)
    bad = [BAD_KINDS[kinds[i % len(kinds)]](i) for i in range(n_bad)]
    duplicates = [bodies[i] for i in rng.choice(len(bodies), n_dup, replace=False)]
    stream = bodies + bad + duplicates
    order = rng.permutation(len(stream))
    events = platform.resources["events"]
    for start in range(0, len(stream), 100_000):
        events.publish([stream[i] for i in order[start : start + 100_000]])

    last_hour = TRAIN_START + pd.Timedelta(seconds=SECONDS - 1).floor("h")
    result = platform.ingest_hours(TRAIN_START, last_hour)

    check = result.check("no_dead_letters")
    assert check.metadata["readings_stored"] == len(bodies) + n_dup
    assert check.metadata["events_dead_lettered"] == n_bad
    assert check.metadata["reasons"] == {kind: n_bad // len(kinds) for kind in kinds}
    assert result.totals["sensor_aggregates.readings"] == len(readings)  # each reading once

    blob, sql = platform.resources["blob"], platform.resources["sql"]
    hours = pd.date_range(TRAIN_START, last_hour, freq="h")
    assert sum(len(read_raw_hour(blob, h)) for h in hours) == len(readings)
    windows = sql.read_sensor_values(TRAIN_START, last_hour + pd.Timedelta(hours=1))
    assert windows["readings"].sum() == len(readings)
    assert len(windows) == DEVICES * SENSORS * SECONDS // 5
    dead = pd.concat([blob.read_parquet(k) for k in blob.list("deadletter/")], ignore_index=True)
    assert sorted(dead["body"]) == sorted(bad)
    assert time.monotonic() - started < 120
