"""Re-sent readings: the first accepted value of a (device, sensor, ts) wins, whatever the order
batches arrive in and whatever their parts' content hashes, on SQLite and on PostgreSQL; repeats
and conflicting re-sends are counted apart from distinct readings."""

import json
import random

import pandas as pd
import pytest
import sqlalchemy as sa

from bscore_assets.aggregation.assets import aggregate_hour
from bscore_assets.ingestion.drain import drain_events
from bscore_assets.storage import read_raw_hour
from resources.blob import LocalBlobStore
from resources.events import LocalEventSource
from resources.sql import SqlStore

HOUR = pd.Timestamp("2026-01-01T00:00")


def batch(value: float) -> list[str]:
    """Eight readings of one series, all with ``value``."""
    return [json.dumps({"ts": f"2026-01-01T00:00:{s:02d}", "device": "1", "sensor": "1", "value": value})
            for s in range(1, 9)]


@pytest.fixture(params=["sqlite", "postgresql"])
def sql(request, tmp_path) -> SqlStore:
    if request.param == "sqlite":
        yield SqlStore(url=f"sqlite:///{tmp_path / 'bscore.db'}")
        return
    store = SqlStore(url=request.getfixturevalue("postgres_url"))
    with store.engine.begin() as conn:  # the session's database is shared by the tests
        conn.execute(sa.text("TRUNCATE sensor_values, predictions"))
    yield store
    with store.engine.begin() as conn:
        conn.execute(sa.text("TRUNCATE sensor_values, predictions"))


@pytest.mark.parametrize("seed", range(8))
def test_the_first_accepted_value_wins_in_every_delivery_order(tmp_path, sql, seed):
    events = LocalEventSource(landing=str(tmp_path / "landing"))
    blob = LocalBlobStore(root=str(tmp_path / "blob"))
    order = random.Random(seed).sample([1.0, 2.0, 3.0, 4.0, 5.0], 5)
    for value in order:  # each re-send accepted by a drain of its own, as hourly runs do
        events.publish(batch(value))
        drain_events(events, blob)
        assert set(read_raw_hour(blob, HOUR)["value"]) == {order[0]}
    found = aggregate_hour(blob, sql, HOUR, 5)
    assert set(sql.read_sensor_values(HOUR, HOUR + pd.Timedelta(hours=1))["value"]) == {order[0]}
    assert (found["readings"], found["redelivered"], found["conflicts"]) == (8, 0, 32)


def test_within_one_batch_the_first_line_wins(tmp_path):
    events = LocalEventSource(landing=str(tmp_path / "landing"))
    blob = LocalBlobStore(root=str(tmp_path / "blob"))
    events.publish(batch(7.0))
    events.publish(batch(3.0))  # both files arrive in one batch
    drain_events(events, blob)
    assert set(read_raw_hour(blob, HOUR)["value"]) == {7.0}


def test_redeliveries_and_conflicting_resends_are_counted_apart_from_distinct_readings(tmp_path):
    events = LocalEventSource(landing=str(tmp_path / "landing"))
    blob = LocalBlobStore(root=str(tmp_path / "blob"))
    redelivered = []
    for _ in range(2):
        events.publish(batch(1.0))
        redelivered.append(drain_events(events, blob).redelivered)
    assert redelivered == [0, 8]  # the same part again: not stored twice
    events.publish(batch(1.0)[:3] + batch(9.0)[3:])  # re-sent with other boundaries and values
    drain_events(events, blob)
    found = aggregate_hour(blob, SqlStore(url=f"sqlite:///{tmp_path / 'bscore.db'}"), HOUR, 5)
    assert (found["readings"], found["redelivered"], found["conflicts"]) == (8, 3, 5)
