"""Does an hour cost the same after a month of history? Hour 720 against hour 1; prints JSON.

Usage::

    .venv/bin/python bench/history.py [--devices 400 --sensors 5 --windows 12 --hours 720 --rounds 3
                                       --layouts old,current --dialects sqlite,postgresql]

For each dialect and key layout two databases are made: one holding only the measured hour
(hour 1) and one holding ``--hours - 1`` earlier hours besides (hour 720 by default), the
history bulk-loaded. The measured work is what a pipeline run does in SQL for one hour:
replace its windows, count them (``window_stats``), list its devices, read its windows back,
replace and count its predictions, replace and read its device verdicts. Rounds alternate the
two databases; the report gives each one's median wall and CPU seconds (this process's CPU:
all of SQLite's work, the client's part of PostgreSQL's) and hour N over hour 1, and, apart,
the seconds of one ``fleet_series`` read (the whole table's device and sensor pairs, which the
fleet sensor reads every minute) on each database.

``--layouts old`` keeps the first layout's keys (``(device, sensor, ts)``, rowid tables) by
creating the tables itself and handing the store an engine the migration never sees, and
inserts batches in the order given, as that layout's code did;
``current`` is what ``SqlStore`` creates. PostgreSQL runs on a temporary database of the
local server (127.0.0.1:5432, trust auth).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bscore_assets.ingestion.fleet import fleet_series  # noqa: E402
from resources import sql  # noqa: E402
from resources.sql import SqlStore  # noqa: E402
from resources.sql_layout import device_leading_layout  # noqa: E402

FIRST_HOUR = pd.Timestamp("2026-01-01T00:00")


def old_layout() -> sa.MetaData:
    return device_leading_layout(sql.metadata)


class Fleet:
    """One hour's rows of every table for a fleet, as Arrow, at any hour."""

    def __init__(self, devices: int, sensors: int, windows: int):
        self.devices = np.array([f"dev{d:05d}" for d in range(devices)], dtype=object)
        self.sensors = np.array([str(s) for s in range(1, sensors + 1)], dtype=object)
        self.windows = windows
        self.rng = np.random.default_rng(0)

    def _ends(self, hour: pd.Timestamp) -> np.ndarray:
        step = 3600 // self.windows
        return (hour + pd.to_timedelta(np.arange(1, self.windows + 1) * step, unit="s")).to_numpy("datetime64[us]")

    def sensor_rows(self, hour: pd.Timestamp) -> dict:
        d, s, w = len(self.devices), len(self.sensors), self.windows
        return {"ts": pa.array(np.tile(self._ends(hour), d * s)),
                "device": pa.array(np.repeat(self.devices, s * w), pa.string()),
                "sensor": pa.array(np.tile(np.repeat(self.sensors, w), d), pa.string()),
                "value": pa.array(self.rng.normal(50, 10, d * s * w))}

    def sensor_values(self, hour: pd.Timestamp) -> pa.Table:
        rows = self.sensor_rows(hour)
        spread = np.abs(self.rng.normal(0, 2, len(rows["ts"])))
        value = rows["value"].to_numpy()
        return pa.table({**rows, "readings": pa.array(np.full(len(rows["ts"]), 12, dtype=np.int64)),
                         "low": pa.array(value - spread), "high": pa.array(value + spread)})

    def predictions(self, hour: pd.Timestamp) -> pa.Table:
        rows = self.sensor_rows(hour)
        score = self.rng.normal(size=len(rows["ts"]))
        return pa.table({**rows, "score": pa.array(score), "is_anomaly": pa.array(score > 3),
                         "model_version": pa.array(np.full(len(score), "v1", dtype=object), pa.string())})

    def verdicts(self, hour: pd.Timestamp) -> pa.Table:
        d, w = len(self.devices), self.windows
        return pa.table({"device": pa.array(np.repeat(self.devices, w), pa.string()),
                         "ts": pa.array(np.tile(self._ends(hour), d)),
                         "is_anomaly": pa.array(np.zeros(d * w, dtype=bool)),
                         "sensors_scored": pa.array(np.full(d * w, len(self.sensors), dtype=np.int64)),
                         "sensors_flagged": pa.array(np.zeros(d * w, dtype=np.int64)),
                         "flagged_sensors": pa.array(np.full(d * w, "", dtype=object), pa.string()),
                         "method": pa.array(np.full(d * w, "vote", dtype=object), pa.string()),
                         "score": pa.array(np.zeros(d * w)),
                         "contributions": pa.array(np.full(d * w, "", dtype=object), pa.string())})


def in_key_order(data: pa.Table, table: sa.Table) -> pa.Table:
    columns = [c.name for c in table.columns]
    key = [(c.name, "ascending") for c in table.primary_key.columns]
    data = data.select(columns)
    return data.take(pc.sort_indices(data, sort_keys=key))


def bulk_load(engine: sa.Engine, keyed: sa.MetaData, fleet: Fleet, hours: list[pd.Timestamp]) -> None:
    """Append the hours' rows of every table, no per-hour delete (history is loaded, not replayed)."""
    makers = {"sensor_values": fleet.sensor_values, "predictions": fleet.predictions, "device_verdicts": fleet.verdicts}
    for table in [sql.metadata.tables[name] for name in makers]:
        batches = (in_key_order(makers[table.name](hour), keyed.tables[table.name]) for hour in hours)
        nothing = table.delete().where(table.c.ts < pd.Timestamp("1900-01-01"))
        if engine.dialect.name == "sqlite":
            sql._replace_sqlite(engine, table, batches, nothing)
        else:
            with engine.begin() as conn:
                for data in batches:
                    sql.bulk_insert(conn, table, data)
            with engine.connect() as conn:
                conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(f"VACUUM ANALYZE {table.name}")
    if "sensor_series" in keyed.tables:  # as the replaces that wrote the history would have kept it
        with engine.begin() as conn:
            conn.execute(sql.record_series(hours[0], hours[-1] + pd.Timedelta(hours=1)))


@contextmanager
def layout_code(layout: str):
    """The code each layout ran with: the old layout's bscore inserted batches in the order given
    (its producers' order, which is the old key's), not sorted by the time-leading key, and kept
    no ``sensor_series``."""
    if layout != "old":
        yield
        return
    sorted_batches = sql._checked_batches

    def batches_as_given(table, batches, start, end, sensors=None):
        columns = [column.name for column in table.columns]
        for batch in batches:
            if len(batch):
                data = sql.arrow_table(batch, columns)
                if sql._rows_outside(data, start, end, sensors):
                    raise ValueError(f"rows for {table.name} lie outside the hours being replaced")
                yield data

    record_series = sql.record_series
    sql._checked_batches, sql.record_series = batches_as_given, lambda start, end: None
    try:
        yield
    finally:
        sql._checked_batches, sql.record_series = sorted_batches, record_series


def open_store(url: str, layout: str) -> SqlStore:
    """A store on ``url`` with the layout's keys; the old layout's engine bypasses the migration."""
    if layout == "old":
        engine = sa.create_engine(url, **sql.engine_options(url))
        old_layout().create_all(engine)
        sql._engines[url] = engine  # the store finds its engine made: no ensure_schema, no migration
    store = SqlStore(url=url)
    store.engine  # noqa: B018  (schema made before loading and timing)
    return store


def hour_of_work(store: SqlStore, fleet: Fleet, hour: pd.Timestamp) -> None:
    """What one pipeline run does in SQL for one hour."""
    end = hour + pd.Timedelta(hours=1)
    sensors = list(fleet.sensors)
    store.replace_sensor_values_batches(hour, end, [fleet.sensor_values(hour)])
    store.window_stats(hour, end)
    store.devices_with_windows(hour, end, sensors)
    store.read_sensor_values(hour, end)
    store.replace_predictions_batches(hour, end, sensors, [fleet.predictions(hour)])
    store.prediction_counts(hour, end, sensors)
    store.replace_device_verdicts_batches(hour, end, [fleet.verdicts(hour)])
    store.read_device_verdicts(hour, end)


@contextmanager
def database(dialect: str, label: str):
    """A URL of an empty database of the dialect, removed afterwards."""
    if dialect == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            yield f"sqlite:///{folder}/{label}.db"
        return
    from tests.conftest import postgres_database, sqlalchemy_postgres_url

    with postgres_database(f"bscore_history_{label}") as name:
        url = sqlalchemy_postgres_url(name)
        try:
            yield url
        finally:
            engine = sql._engines.pop(url, None)
            if engine is not None:
                engine.dispose()


def measure(dialect: str, layout: str, args) -> dict:
    with layout_code(layout):
        return measure_layout(dialect, layout, args)


def measure_layout(dialect: str, layout: str, args) -> dict:
    fleet = Fleet(args.devices, args.sensors, args.windows)
    measured = FIRST_HOUR + pd.Timedelta(hours=args.hours - 1)
    keyed = old_layout() if layout == "old" else sql.metadata
    with database(dialect, f"{layout}_first") as first_url, database(dialect, f"{layout}_late") as late_url:
        first, late = open_store(first_url, layout), open_store(late_url, layout)
        started = time.perf_counter()
        bulk_load(late.engine, keyed, fleet, list(pd.date_range(FIRST_HOUR, measured, freq="h", inclusive="left")))
        load_seconds = time.perf_counter() - started
        hour_of_work(first, fleet, measured)  # both databases hold the hour before timing
        hour_of_work(late, fleet, measured)
        seconds = {"hour_1": [], f"hour_{args.hours}": []}
        cpu = {"hour_1": [], f"hour_{args.hours}": []}
        for round_ in range(args.rounds):
            order = [("hour_1", first), (f"hour_{args.hours}", late)]
            for name, store in order if round_ % 2 == 0 else order[::-1]:
                wall0, cpu0 = time.perf_counter(), time.process_time()
                hour_of_work(store, fleet, measured)
                seconds[name].append(time.perf_counter() - wall0)
                cpu[name].append(time.process_time() - cpu0)
        # Not part of an hour's work, but read by the fleet sensor every minute: the whole table's series.
        series = {}
        for name, store in (("hour_1", first), (f"hour_{args.hours}", late)):
            wall0 = time.perf_counter()
            if layout == "old":  # that layout's code: one DISTINCT over sensor_values
                with store.engine.connect() as conn:
                    conn.execute(sa.select(sql.sensor_values.c.device, sql.sensor_values.c.sensor).distinct()).all()
            else:
                fleet_series(store)
            series[name] = round(time.perf_counter() - wall0, 3)
        rows = sum(len(make(measured)) for make in (fleet.sensor_values, fleet.predictions, fleet.verdicts))
    late_name = f"hour_{args.hours}"
    wall = {name: statistics.median(values) for name, values in seconds.items()}
    cpus = {name: statistics.median(values) for name, values in cpu.items()}
    return {"history_rows": rows * (args.hours - 1), "load_seconds": round(load_seconds, 1), "hour_rows": rows,
            "wall_seconds": {k: [round(v, 3) for v in vs] for k, vs in seconds.items()},
            "cpu_seconds": {k: [round(v, 3) for v in vs] for k, vs in cpu.items()},
            "wall_ratio": round(wall[late_name] / wall["hour_1"], 2),
            "cpu_ratio": round(cpus[late_name] / cpus["hour_1"], 2), "fleet_series_seconds": series}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--devices", type=int, default=400)
    parser.add_argument("--sensors", type=int, default=5)
    parser.add_argument("--windows", type=int, default=12, help="windows per device, sensor and hour")
    parser.add_argument("--hours", type=int, default=720, help="the measured hour's place in the history")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--layouts", default="old,current")
    parser.add_argument("--dialects", default="sqlite,postgresql")
    args = parser.parse_args()
    if args.hours < 2:
        parser.error(f"--hours {args.hours}: give at least 2 (hour 1 is the other side of the comparison)")
    if 3600 % args.windows:
        parser.error(f"--windows {args.windows}: give a divisor of 3600 (windows of whole seconds)")
    report = {}
    for dialect in args.dialects.split(","):
        for layout in args.layouts.split(","):
            if layout not in ("old", "current"):
                parser.error(f"--layouts: {layout!r} is not old or current")
            report[f"{dialect}/{layout}"] = measure(dialect, layout, args)
            print(json.dumps({f"{dialect}/{layout}": report[f"{dialect}/{layout}"]}), file=sys.stderr, flush=True)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
