"""Publishing an hour of predictions through the run versus staged by the jobs; prints JSON.

Usage::

    .venv/bin/python bench/staged_publish.py [--devices 400 --sensors 5 --windows 720 --shard 200]
                                             [--dialects postgresql,sqlite --rounds 2]

Two ways the same hour (``--devices x --sensors x --windows`` rows, ``bench/sql_bulk.py``'s
data) reaches SQL ``predictions``, alternating, ``--rounds`` times each:

- ``through_run``: the local path, ``replace_predictions_batches`` with a shard's rows at a
  time (the run's process converts and sends every row);
- ``staged``: the Azure ML path, each shard of ``--shard`` devices staged by
  ``ShardSql.stage_predictions`` (what a job does, measured here one after another), then one
  ``publish_staged_predictions`` (what the run does: the server moves the rows).

For each: wall seconds and this process's CPU seconds of the run's part, and of the jobs' part;
``publish_rows_per_second`` is what bounds a run: the rows its publishing moves per second.
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402

from bench.sql_bulk import HOUR, predictions  # noqa: E402
from resources import sql  # noqa: E402
from resources.sql import SqlStore  # noqa: E402
from scoring.shard_sql import ShardSql  # noqa: E402

END = HOUR + pd.Timedelta(hours=1)


def timed(work) -> tuple[float, float]:
    """(wall, CPU) seconds of ``work()`` in this process."""
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    return time.perf_counter() - wall, time.process_time() - cpu


def shards(frame: pd.DataFrame, devices_per_shard: int) -> list[tuple[list[str], pd.DataFrame]]:
    devices = sorted(frame["device"].unique())
    chunks = [devices[i:i + devices_per_shard] for i in range(0, len(devices), devices_per_shard)]
    return [(chunk, frame[frame["device"].isin(chunk)]) for chunk in chunks]


def through_run(store: SqlStore, parts, sensors) -> dict:
    wall, cpu = timed(lambda: store.replace_predictions_batches(HOUR, END, sensors, (rows for _, rows in parts)))
    return {"publish_wall_seconds": wall, "publish_cpu_seconds": cpu, "jobs_wall_seconds": 0.0}


def staged(store: SqlStore, parts, sensors, run: str) -> dict:
    job = ShardSql(store.url)
    jobs_wall, _ = timed(lambda: [job.stage_predictions(run, devices, HOUR, END, [rows]) for devices, rows in parts])
    expected = {s: int(sum((rows["sensor"] == s).sum() for _, rows in parts)) for s in sensors}
    wall, cpu = timed(lambda: store.publish_staged_predictions(run, HOUR, END, expected))
    job.engine.dispose()
    return {"publish_wall_seconds": wall, "publish_cpu_seconds": cpu, "jobs_wall_seconds": jobs_wall}


def measure(url: str, frame: pd.DataFrame, devices_per_shard: int, rounds: int) -> dict:
    store = SqlStore(url=url)
    store.engine  # noqa: B018  (schema made before timing)
    parts, sensors = shards(frame, devices_per_shard), sorted(frame["sensor"].unique())
    runs = {"through_run": [], "staged": []}
    for round_ in range(rounds):
        for way in ("through_run", "staged") if round_ % 2 == 0 else ("staged", "through_run"):
            measured = through_run(store, parts, sensors) if way == "through_run" else \
                staged(store, parts, sensors, f"bench{round_}")
            assert len(store.read_predictions(HOUR, END)) == len(frame)
            runs[way].append(measured)
    sql._engines.pop((store.url, store.auth), None)
    store.engine.dispose()
    report, raw = {}, {}
    for way, measured in runs.items():
        # Ratios and rates from the unrounded medians: a tiny hour publishes in well under 10 ms.
        raw[way] = {k: max(statistics.median(m[k] for m in measured), 1e-9) for k in measured[0]}
        report[way] = {**{k: round(v, 4) for k, v in raw[way].items()}, "rows": len(frame),
                       "publish_rows_per_second": round(len(frame) / raw[way]["publish_wall_seconds"]),
                       "publish_wall_seconds_each": [round(m["publish_wall_seconds"], 4) for m in measured]}
    report["staged_publish_over_through_run"] = {
        k: round(raw["staged"][k] / raw["through_run"][k], 3) for k in ("publish_wall_seconds", "publish_cpu_seconds")}
    return report


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--devices", type=int, default=400)
    parser.add_argument("--sensors", type=int, default=5)
    parser.add_argument("--windows", type=int, default=720)
    parser.add_argument("--shard", type=int, default=200)
    parser.add_argument("--dialects", default="postgresql,sqlite")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    frame = predictions(args.devices, args.sensors, args.windows)
    report = {}
    for dialect in args.dialects.split(","):
        with contextlib.ExitStack() as stack:
            if dialect == "sqlite":
                folder = stack.enter_context(tempfile.TemporaryDirectory())
                url = f"sqlite:///{folder}/bench.db"
            else:
                from tests.conftest import postgres_database, sqlalchemy_postgres_url

                url = sqlalchemy_postgres_url(stack.enter_context(postgres_database("bscore_bench_staged")))
            report[dialect] = measure(url, frame, args.shard, args.rounds)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
