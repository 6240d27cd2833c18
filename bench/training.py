"""``bscore train`` of a fleet against its floor, a bare loop fitting the same models; prints JSON.

Usage::

    .venv/bin/python bench/training.py [--sizes 400,2000 --sensors 5 --hours 2 --pairs 2 --out FILE]

For each fleet size a fresh ``BSCORE_HOME`` gets ``--hours`` closed hours of 5-second windows
(``ts, device, sensor, value, readings, low, high``) written straight into its SQL store, with
``BSCORE_AGGREGATION=asa`` so that ``bscore train`` trains on them as they are (ingestion and
aggregation have their own benches: fleet_hour.py, ingest.py). Then, alternating, ``--pairs``
times:

- ``first``: ``bscore train`` over the hours with no model stored yet (the blob ``models/``
  folder removed before it);
- ``floor``: a bare loop, in a subprocess, fitting what ``bscore train`` fits by default
  (``BSCORE_DETECTOR``'s robust kind per sensor at the device's budget split over its
  sensors, and the multivariate device model), on the same windows read the cheapest way
  (ADBC straight from SQLite into Arrow, sorted by the database), over ``--workers`` forked
  processes; no gate, no storing, no bookkeeping;
- ``retrain``: ``bscore train`` again, now with a current model per device (the
  champion/challenger gate scores the window with it first).

Each is measured by CPU seconds of its whole process tree (``getrusage(RUSAGE_CHILDREN)``
around the subprocess: its workers are reaped within it) and wall seconds; the machine may be
shared, so the ratios compare CPU seconds measured in the same run. The JSON ends with the
ratios issue 20's bar is stated in: ``bscore train`` CPU over the floor's, at most 2.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scoring.simulate import sensor_range  # noqa: E402

WINDOWS_PER_HOUR = 720  # 5-second windows
READINGS_PER_WINDOW = 5


# ---------------------------------------------------------------------------------- the fleet


def fleet_hour_windows(devices: int, sensors: int, hour: pd.Timestamp, rng: np.random.Generator) -> pa.Table:
    """One hour of windows of every device and sensor: the mean, low and high of 5 readings
    uniform in the sensor's reference range, as aggregation would have written them."""
    series = devices * sensors
    lo = np.array([sensor_range(s)[0] for s in range(1, sensors + 1)])
    width = np.array([sensor_range(s)[1] for s in range(1, sensors + 1)]) - lo
    readings = rng.random((WINDOWS_PER_HOUR * series, READINGS_PER_WINDOW))
    sensor_code = np.tile(np.arange(sensors), WINDOWS_PER_HOUR * devices)
    scaled = lo[sensor_code, None] + readings * width[sensor_code, None]
    ends = hour + pd.to_timedelta(np.arange(1, WINDOWS_PER_HOUR + 1) * 5, unit="s")
    return pa.table({
        "ts": pa.array(np.repeat(ends.to_numpy(), series)),
        "device": pa.array(np.tile(np.repeat(np.arange(1, devices + 1).astype(str), sensors), WINDOWS_PER_HOUR)),
        "sensor": pa.array(np.tile(np.arange(1, sensors + 1).astype(str), WINDOWS_PER_HOUR * devices)),
        "value": pa.array(scaled.mean(axis=1)),
        "readings": pa.array(np.full(len(scaled), READINGS_PER_WINDOW, dtype=np.int64)),
        "low": pa.array(scaled.min(axis=1)),
        "high": pa.array(scaled.max(axis=1)),
    })


def write_fleet(home: Path, devices: int, sensors: int, hours: list[pd.Timestamp], seed: int) -> int:
    """The hours' windows into ``home``'s SQL store, as ``bscore``'s own store writes them."""
    from resources.sql import SqlStore

    store = SqlStore(url=f"sqlite:///{home / 'bscore.db'}")
    rng = np.random.default_rng(seed)
    windows = 0
    for hour in hours:
        table = fleet_hour_windows(devices, sensors, hour, rng)
        store.replace_sensor_values_batches(hour.to_pydatetime(), (hour + pd.Timedelta(hours=1)).to_pydatetime(),
                                            [table])
        windows += len(table)
    store.engine.dispose()
    return windows


# ------------------------------------------------------------------------------------ floor


def _fit_devices(bounds: tuple[int, int]) -> int:
    """Fit devices ``bounds`` of the table the parent forked with; how many models were fitted."""
    from dataclasses import replace

    from scoring.detectors import KINDS, FitOptions
    from scoring.detectors.multivariate import fit_device

    table, starts, kind, options = _FLOOR
    robust = KINDS[kind]
    values, low, high = table["values"], table["low"], table["high"]
    sensor_codes = table["sensor_codes"]
    fitted = 0
    for d in range(*bounds):
        a, b = starts[d], starts[d + 1]
        codes = sensor_codes[a:b]
        cuts = np.flatnonzero(np.diff(codes)) + 1
        parts = np.split(np.arange(a, b), cuts)
        per_sensor = replace(options, false_alarm_rate=options.false_alarm_rate / len(parts))
        for rows in parts:
            robust.fit(values[rows], per_sensor, low=low[rows], high=high[rows])
            fitted += 1
        if len({len(rows) for rows in parts}) == 1:  # every sensor has every window: stack them
            fit_device(np.stack([values[rows] for rows in parts], axis=1), [str(i) for i in range(len(parts))],
                       options)
            fitted += 1
    return fitted


_FLOOR: tuple = ()


def floor_training(db: Path, start: pd.Timestamp, end: pd.Timestamp, workers: int, kind: str,
                   false_alarm_rate: float) -> dict:
    """Read the windows with ADBC and fit every device's models over ``workers`` forked processes."""
    import multiprocessing

    import adbc_driver_sqlite.dbapi as adbc_sqlite
    import pyarrow.compute as pc

    from scoring.detectors import FitOptions

    global _FLOOR
    started = time.perf_counter()
    with adbc_sqlite.connect(str(db)) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT device, sensor, value, low, high FROM sensor_values WHERE ts > ? AND ts <= ? "
                       "ORDER BY device, sensor, ts", (f"{start:%Y-%m-%d %H:%M:%S.%f}", f"{end:%Y-%m-%d %H:%M:%S.%f}"))
        table = cursor.fetch_arrow_table()
    read = time.perf_counter() - started
    device = pc.dictionary_encode(table["device"]).combine_chunks()
    device_codes = device.indices.to_numpy()
    starts = np.concatenate([[0], np.flatnonzero(np.diff(device_codes)) + 1, [len(device_codes)]])
    columns = {"values": table["value"].to_numpy(), "low": table["low"].to_numpy(), "high": table["high"].to_numpy(),
               "sensor_codes": pc.dictionary_encode(table["sensor"]).combine_chunks().indices.to_numpy()}
    _FLOOR = (columns, starts, kind, FitOptions(false_alarm_rate=false_alarm_rate))
    _fit_devices((0, 1))  # imports and compiled kernels loaded once, before the workers fork
    devices = len(starts) - 1
    edges = np.linspace(0, devices, workers * 4 + 1).astype(int)
    chunks = [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:]) if b > a]
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        models = sum(pool.map(_fit_devices, chunks))
    return {"windows": len(table), "devices": devices, "models": models, "read_seconds": round(read, 2),
            "fit_seconds": round(time.perf_counter() - started - read, 2)}


# ------------------------------------------------------------------------------ measurements


def run_measured(command: list[str], env: dict, log: Path) -> dict:
    """Run a command; its wall seconds and the CPU seconds of its process tree."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    with open(log, "ab") as out:
        done = subprocess.run(command, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited with {done.returncode}; see {log}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": round(seconds, 2), "cpu_s": round(cpu, 2)}


def bench_size(devices: int, sensors: int, hours: int, pairs: int, workers: int, work: Path, seed: int) -> dict:
    from scoring.detectors import DEFAULT_FALSE_ALARM_RATE, DEFAULT_KIND

    home = work / f"home-{devices}"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    last = pd.Timestamp.now("UTC").tz_localize(None).floor("h") - pd.Timedelta(hours=2)
    window = [last - pd.Timedelta(hours=h) for h in range(hours - 1, -1, -1)]
    started = time.perf_counter()
    windows = write_fleet(home, devices, sensors, window, seed)
    env = {**os.environ, "BSCORE_HOME": str(home), "PYTHONPATH": str(ROOT), "BSCORE_AGGREGATION": "asa",
           "BSCORE_START": (window[0] - pd.Timedelta(days=1)).strftime("%Y-%m-%dT%H:00"), "BSCORE_EVENTS": "local"}
    for name in ("BSCORE_SQL_URL", "BSCORE_BLOB_URL", "BSCORE_COMPUTE", "BSCORE_DETECTOR", "BSCORE_FALSE_ALARM_RATE",
                 "DAGSTER_HOME"):
        env.pop(name, None)
    result = {"devices": devices, "sensors": sensors, "hours": hours, "windows": windows,
              "write_seconds": round(time.perf_counter() - started, 2), "first": [], "floor": [], "retrain": []}
    hour_text = lambda h: h.strftime("%Y-%m-%dT%H")  # noqa: E731
    train = [sys.executable, "-m", "bscore_assets.cli", "train", "--from", hour_text(window[0]), "--to",
             hour_text(window[-1])]
    floor_out = work / f"floor-{devices}.json"
    floor = [sys.executable, str(Path(__file__).resolve()), "--floor-only", str(home / "bscore.db"),
             str(window[0]), str(window[-1] + pd.Timedelta(hours=1)), str(workers), DEFAULT_KIND,
             str(DEFAULT_FALSE_ALARM_RATE), str(floor_out)]
    log = work / f"bscore-{devices}.log"
    for _ in range(pairs):
        shutil.rmtree(home / "blob" / "models", ignore_errors=True)
        result["first"].append(run_measured(train, env, log))
        result["floor"].append({**run_measured(floor, env, log), **json.loads(floor_out.read_text())})
        result["retrain"].append(run_measured(train, env, log))
    floor_cpu = statistics.median(r["cpu_s"] for r in result["floor"])
    result["ratios"] = {f"{stage}_cpu_over_floor": round(statistics.median(r["cpu_s"] for r in result[stage])
                                                         / floor_cpu, 2) for stage in ("first", "retrain")}
    return result


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="400,2000", help="fleet sizes in devices, comma-separated")
    parser.add_argument("--sensors", type=int, default=5)
    parser.add_argument("--hours", type=int, default=2, help="hours of windows trained on (the last one held out)")
    parser.add_argument("--pairs", type=int, default=2, help="alternations of bscore train and the floor")
    parser.add_argument("--workers", type=int, default=2, help="processes of the floor")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default=None, help="working folder (default: a temporary one, removed)")
    parser.add_argument("--out", default=None, help="also write the JSON here")
    parser.add_argument("--floor-only", nargs=7, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.floor_only:
        db, start, end, workers, kind, rate, out = args.floor_only
        Path(out).write_text(json.dumps(floor_training(Path(db), pd.Timestamp(start), pd.Timestamp(end),
                                                       int(workers), kind, float(rate))))
        return {}
    if args.hours < 1 or args.pairs < 1 or args.workers < 1:
        parser.error("--hours, --pairs and --workers must be at least 1")
    sizes = [int(s) for s in args.sizes.split(",")]
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="bscore-training-"))
    work.mkdir(parents=True, exist_ok=True)
    report = {"command": " ".join([Path(sys.executable).name] + sys.argv),
              "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                          "load_average": os.getloadavg()},
              "sizes": {}}
    try:
        for devices in sizes:
            report["sizes"][str(devices)] = bench_size(devices, args.sensors, args.hours, args.pairs, args.workers,
                                                       work, args.seed)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    report["summary"] = {size: run["ratios"] for size, run in report["sizes"].items()}
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return report


if __name__ == "__main__":
    main()
