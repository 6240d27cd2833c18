"""A U+2028 inside a JSON-lines event must not split the event (issue 11, case 5).

``str.splitlines`` splits on U+2028/U+2029 too, and JSON allows them raw inside strings, so
one event could become several, one of them a well-formed reading nobody sent.
"""

import json

import pandas as pd

from tests.assets.conftest import TRAIN_START

TS = (TRAIN_START + pd.Timedelta(minutes=10)).isoformat()


def test_a_line_separator_inside_an_event_keeps_it_one_event(platform):
    ghost = json.dumps({"ts": TS, "device": "ghost", "sensor": "1", "value": 5.0})
    smuggler = '{"ts": "%s", "device": "1", "sensor": "1", "value": 1.0, "note": "\u2028' % TS + ghost + '\u2028"}'
    good = json.dumps({"ts": TS, "device": "1", "sensor": "2", "value": 2.0})
    platform.resources["events"].publish([good, smuggler])
    result = platform.ingest_hours(TRAIN_START, TRAIN_START)
    drained = result.check("no_dead_letters").metadata
    assert drained["readings_stored"] == 1
    assert drained["events_dead_lettered"] == 1
    blob = platform.resources["blob"]
    dead = pd.concat([blob.read_parquet(k) for k in blob.list("deadletter/")])
    assert dead["body"].tolist() == [smuggler]  # the whole event, with its separators
    windows = platform.resources["sql"].read_sensor_values(TRAIN_START, TRAIN_START + pd.Timedelta(hours=1))
    assert set(windows["device"]) == {"1"} and windows["readings"].sum() == 1
