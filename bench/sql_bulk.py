"""Replace and read back one hour of predictions through ``SqlStore``; prints JSON.

Usage::

    .venv/bin/python bench/sql_bulk.py [--devices 2000 --sensors 5 --windows 720 --dialects sqlite,postgresql]
                                       [--layouts current --rounds 1]

``--devices x --sensors x --windows`` rows (default 7.2 M: a 2,000-device fleet's hour of
5-second windows) are written with ``replace_predictions`` (one transaction: delete the
hour, bulk insert) and read back with ``read_predictions``, on SQLite (a temporary file)
and on a temporary database of the local PostgreSQL server (127.0.0.1:5432, trust auth).
The rows read back are compared with the rows written. ``--layouts old,current`` measures the
first layout's keys (``(device, sensor, ts)``, as ``bench/history.py`` makes them) beside the
current time-leading ones, ``--rounds`` times each, alternating; the medians are reported.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.history import layout_code, open_store  # noqa: E402
from resources import sql  # noqa: E402
from resources.sql import SqlStore  # noqa: E402

HOUR = pd.Timestamp("2026-01-01T00:00")


def predictions(devices: int, sensors: int, windows: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    ends = HOUR + pd.to_timedelta(np.arange(1, windows + 1) * (3600 // windows), unit="s")
    n = devices * sensors * windows
    frame = pd.DataFrame({
        "ts": np.tile(ends.to_numpy(dtype="datetime64[ns]"), devices * sensors),
        "device": np.repeat(np.array([f"dev{d:05d}" for d in range(devices)], dtype=object), sensors * windows),
        "sensor": np.tile(np.repeat(np.array([str(s) for s in range(1, sensors + 1)], dtype=object), windows), devices),
        "value": rng.normal(50, 10, n),
    })
    frame["score"] = rng.normal(size=n)
    frame["is_anomaly"] = frame["score"] > 3
    frame["model_version"] = "v1"
    return frame


def measure(store: SqlStore, frame: pd.DataFrame, sensors: list[str]) -> dict:
    end = HOUR + pd.Timedelta(hours=1)
    store.engine  # noqa: B018  (create the schema before timing)
    started = time.perf_counter()
    store.replace_predictions(frame, HOUR, end, sensors)
    write = time.perf_counter() - started
    started = time.perf_counter()
    back = store.read_predictions(HOUR, end)
    read = time.perf_counter() - started
    same = len(back) == len(frame) and bool((back["value"].to_numpy() == frame["value"].to_numpy()).all())
    return {"rows": len(frame), "write_seconds": round(write, 2), "read_seconds": round(read, 2),
            "write_rows_per_second": round(len(frame) / write), "read_rows_per_second": round(len(frame) / read),
            "read_back_equal": same}


def measure_layouts(url_of, layouts: list[str], rounds: int, frame: pd.DataFrame, sensors: list[str]) -> dict:
    """Each layout on a database of its own, ``rounds`` times, alternating; medians and ratios."""
    runs = {layout: [] for layout in layouts}
    with contextlib.ExitStack() as stack:
        stores = {layout: open_store(stack.enter_context(url_of(layout)), layout) for layout in layouts}
        for round_ in range(rounds):
            for layout in layouts if round_ % 2 == 0 else layouts[::-1]:
                with layout_code(layout):
                    runs[layout].append(measure(stores[layout], frame, sensors))
        for layout, store in stores.items():
            sql._engines.pop(store.url, None)
            store.engine.dispose()
    report = {}
    for layout, measured in runs.items():
        report[layout] = {**measured[-1], **{k: statistics.median(m[k] for m in measured)
                                             for k in ("write_seconds", "read_seconds")},
                          "write_seconds_each": [m["write_seconds"] for m in measured],
                          "read_seconds_each": [m["read_seconds"] for m in measured]}
    if "old" in report and "current" in report:
        report["current_over_old"] = {k: round(report["current"][k] / report["old"][k], 2)
                                      for k in ("write_seconds", "read_seconds")}
    return report


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--devices", type=int, default=2000)
    parser.add_argument("--sensors", type=int, default=5)
    parser.add_argument("--windows", type=int, default=720)
    parser.add_argument("--dialects", default="sqlite,postgresql")
    parser.add_argument("--layouts", default="current", help="old, current or both (old,current)")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    frame = predictions(args.devices, args.sensors, args.windows)
    sensors = sorted(frame["sensor"].unique())
    layouts = args.layouts.split(",")
    report = {}
    for dialect in args.dialects.split(","):
        if dialect == "sqlite":
            folder = tempfile.TemporaryDirectory()

            @contextlib.contextmanager
            def url_of(layout):
                yield f"sqlite:///{folder.name}/{layout}.db"

            with folder:
                report["sqlite"] = measure_layouts(url_of, layouts, args.rounds, frame, sensors)
        else:
            from tests.conftest import postgres_database, sqlalchemy_postgres_url

            @contextlib.contextmanager
            def url_of(layout):
                with postgres_database(f"bscore_bench_{layout}") as name:
                    yield sqlalchemy_postgres_url(name)

            report["postgresql"] = measure_layouts(url_of, layouts, args.rounds, frame, sensors)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
