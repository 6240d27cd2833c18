"""Draining the event source: good readings kept once, bad ones dead-lettered with reasons."""

import json

import pandas as pd
import pytest

from bscore_assets.ingestion.drain import drain_events
from bscore_assets.storage import raw_parts, read_raw_hour
from resources.blob import LocalBlobStore
from resources.events import LocalEventSource
from scoring.blob_layout import DEADLETTER_PREFIX, part_rows


def body(ts, device="1", sensor="1", value=1.0):
    return json.dumps({"ts": ts, "device": device, "sensor": sensor, "value": value})


def test_drain_keeps_good_events_once_and_dead_letters_bad_ones(tmp_path):
    events = LocalEventSource(landing=str(tmp_path / "landing"))
    blob = LocalBlobStore(root=str(tmp_path / "blob"))
    good = [body("2026-01-01T00:00:01"), body("2026-01-01T01:30:00", value=2.0)]
    events.publish(good + ['{"broken"', body("2026-01-01T00:00:02", value=float("nan"))])
    events.publish(good)  # delivered twice
    summary = drain_events(events, blob)
    assert (summary.accepted, summary.rejected) == (4, 2)
    assert len(read_raw_hour(blob, pd.Timestamp("2026-01-01T00:00"))) == 1
    assert len(read_raw_hour(blob, pd.Timestamp("2026-01-01T01:00"))) == 1
    [dead_key] = blob.list("deadletter/")
    dead = blob.read_parquet(dead_key)
    assert sorted(dead["reason"].str.split(":").str[0]) == ["bad value", "malformed JSON"]
    assert summary.reasons == {"bad value": 1, "malformed JSON": 1}
    assert drain_events(events, blob).accepted == 0


def test_crash_before_commit_redelivers_without_duplicates(tmp_path):
    events = LocalEventSource(landing=str(tmp_path / "landing"))
    blob = LocalBlobStore(root=str(tmp_path / "blob"))
    events.publish([body(f"2026-01-01T00:00:{s:02d}") for s in range(1, 11)])

    class CrashOnCommit(LocalEventSource):
        def commit(self, batch):
            raise KeyboardInterrupt("killed")

    try:
        drain_events(CrashOnCommit(landing=events.landing), blob)
    except KeyboardInterrupt:
        pass
    again = drain_events(events, blob)  # re-delivered: the hour holds its part already
    assert (again.accepted, again.redelivered) == (0, 10)
    # Readers drop repeats, so only the stored parts show a duplicate: one part of 10 rows.
    hour = pd.Timestamp("2026-01-01T00:00")
    assert [part_rows(key) for key in raw_parts(blob, hour)] == [10]
    assert len(read_raw_hour(blob, hour)) == 10
    assert blob.list(DEADLETTER_PREFIX) == []


def test_parts_are_named_with_their_time_span_and_old_names_span_the_hour(tmp_path):
    from scoring.blob_layout import part_layout, raw_part_key

    events = LocalEventSource(landing=str(tmp_path / "landing"))
    blob = LocalBlobStore(root=str(tmp_path / "blob"))
    events.publish([body("2026-01-01T00:10:00.250"), body("2026-01-01T00:20:00", device="2"),
                    body("2026-01-01T01:00:00", device="3")])  # the end of hour 00 belongs to it
    drain_events(events, blob)
    [key] = raw_parts(blob, pd.Timestamp("2026-01-01T00:00"))
    assert part_layout(key) == (3, 600, 3600) and part_rows(key) == 3
    old = "raw/2026-01-01T00/part-0123456789abcdef0123-42.parquet"
    assert part_layout(old) == (42, 0, 3600) and part_rows(old) == 42
    with pytest.raises(ValueError, match="outside its hour"):
        raw_part_key(pd.Timestamp("2026-01-01T00:00"), "ab", 1, (-1, 5))


def test_a_parts_name_depends_on_its_readings_and_their_order_not_on_arrow_chunks():
    import pyarrow as pa

    from bscore_assets.storage import arrow_digest

    table = pa.table({"ts": pa.array(pd.date_range("2026-01-01", periods=6, freq="s").values),
                      "device": ["1", "22", "1", "333", "1", ""], "sensor": ["1"] * 6,
                      "value": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]})
    chunked = pa.concat_tables([table.slice(0, 2), table.slice(2, 3), table.slice(5)])
    sliced = pa.concat_tables([table, table]).slice(6)  # buffers with offsets
    assert arrow_digest(table) == arrow_digest(chunked) == arrow_digest(sliced)
    assert arrow_digest(table) != arrow_digest(table.take([1, 0, 2, 3, 4, 5]))
    moved_boundary = pa.array(["12", "2", "1", "333", "1", ""])  # same bytes, other string boundaries
    assert arrow_digest(table) != arrow_digest(table.set_column(1, "device", moved_boundary))
    assert arrow_digest(table) != arrow_digest(table.slice(0, 5))
