"""The fleet's questions to SQL are DISTINCT queries that return one row per device or series,
never the windows themselves (a sensor tick at 2,000 devices would otherwise hold millions)."""

import pandas as pd
import pytest
import sqlalchemy as sa

from bscore_assets.ingestion.fleet import fleet_series, silent_devices
from resources.sql import SqlStore
from tests.resources.test_sql import H0, windows

HOURS = [H0 + pd.Timedelta(hours=h) for h in range(4)]


@pytest.fixture
def store(tmp_path) -> SqlStore:
    """d1 and d2 send every hour, d3 only in the first; d4 is registered but never sent."""
    store = SqlStore(url=f"sqlite:///{tmp_path / 'bscore.db'}")
    for hour in HOURS:
        devices = ("d1", "d2", "d3") if hour == H0 else ("d1", "d2")
        store.replace_sensor_values(windows(hour, devices=devices), hour, hour + pd.Timedelta(hours=1))
    return store


@pytest.fixture
def queries(store):
    """Each statement the store's engine runs."""
    seen = []

    def after(conn, cursor, statement, parameters, context, executemany):
        seen.append(statement)

    sa.event.listen(store.engine, "after_cursor_execute", after)
    yield seen
    sa.event.remove(store.engine, "after_cursor_execute", after)


@pytest.mark.parametrize("hours, silent", [(1, ["d3", "d4"]), (3, ["d3", "d4"]), (4, ["d4"])])
def test_silent_devices_are_those_without_a_window_in_the_last_hours(store, queries, hours, silent):
    assert silent_devices(store, ["d1", "d2", "d3", "d4"], HOURS[-1], hours) == silent
    assert len(queries) == 1  # ids only, not windows:
    assert " ".join(queries[0].split("FROM")[0].split()) == "SELECT DISTINCT sensor_values.device"


@pytest.mark.parametrize("aggregation, question", [
    ("local", "SELECT sensor_series.device, sensor_series.sensor"),  # the pairs kept as windows are written
    ("asa", "SELECT DISTINCT sensor_values.device, sensor_values.sensor"),  # Stream Analytics writes the windows
])
def test_fleet_series_is_one_row_per_device_and_sensor(store, queries, aggregation, question):
    from bscore_assets.settings import Settings

    series = fleet_series(store, Settings.from_env({"BSCORE_AGGREGATION": aggregation}))
    assert sorted(map(tuple, series.to_numpy().tolist())) == [(d, s) for d in ("d1", "d2", "d3") for s in ("s1", "s2")]
    assert len(queries) == 1
    assert " ".join(queries[0].split("FROM")[0].split()) == question
