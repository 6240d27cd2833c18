"""``bscore ingest`` of one file in each format, timed as a user runs it; prints JSON.

Usage::

    .venv/bin/python bench/ingest.py [--megabytes 1024] [--formats long,wide,jsonl] [--repeat 1]

For each format a file of about ``--megabytes`` is written (a fleet's readings, one per second
per sensor, 10 sensors a device: long CSV ``ts,device,sensor,value``, wide CSV with a column per
sensor, JSON-lines events as devices send them), then ``bscore ingest`` lands it into a fresh
``BSCORE_HOME``. Reported per format: readings, wall seconds, CPU seconds of the command (its
process and threads, from ``resource.getrusage(RUSAGE_CHILDREN)``), readings per wall second and
per CPU second, the fixed cost (the same command on a file of 1,000 readings), readings per CPU
second beyond the fixed cost, and the CPU seconds a 1 GB file of the format would take (the fixed
cost plus its readings at that rate). Issue 20's bar is 1 M readings per second of wall time on
a 1 GB file of each format.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
BSCORE = [sys.executable, "-m", "bscore_assets.cli"]
SENSORS = 10
BYTES_PER_READING = {"long": 32, "wide": 9, "jsonl": 78}  # about, to size the file


def fleet(readings: int, seed: int = 0) -> pd.DataFrame:
    """``readings`` readings, one a second per sensor of each device, ending at the last hour."""
    seconds = max(1, readings // (SENSORS * 100))
    devices = max(1, readings // (SENSORS * seconds))
    start = pd.Timestamp.now("UTC").tz_localize(None).floor("h") - pd.Timedelta(seconds=seconds)
    ts = (start + pd.to_timedelta(np.arange(1, seconds + 1), unit="s")).strftime("%Y-%m-%dT%H:%M:%S")
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "ts": np.repeat(np.asarray(ts), devices * SENSORS),
        "device": np.tile(np.repeat(np.arange(1, devices + 1).astype(str), SENSORS), seconds),
        "sensor": np.tile(np.arange(1, SENSORS + 1).astype(str), seconds * devices),
        "value": np.round(rng.normal(50, 5, seconds * devices * SENSORS), 3),
    })


def write(frame: pd.DataFrame, kind: str, path: Path) -> int:
    """The readings in ``kind``'s layout at ``path``; returns how many readings it holds."""
    if kind == "long":
        frame.to_csv(path, index=False)
    elif kind == "wide":
        wide = frame.pivot(index=["ts", "device"], columns="sensor", values="value").reset_index()
        wide.to_csv(path, index=False)
    else:
        with open(path, "w") as out:
            for t, d, s, v in zip(frame["ts"], frame["device"], frame["sensor"], frame["value"]):
                out.write(f'{{"ts": "{t}", "device": "{d}", "sensor": "{s}", "value": {v}}}\n')
    return len(frame)


def ingest(path: Path, home: Path) -> tuple[float, float]:
    """Wall and CPU seconds of ``bscore ingest path`` into ``home``."""
    env = {**os.environ, "BSCORE_HOME": str(home), "PYTHONPATH": str(ROOT)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run([*BSCORE, "ingest", str(path)], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode:
        raise SystemExit(f"bscore ingest {path} failed:\n{done.stderr[-2000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--megabytes", type=float, default=1024)
    parser.add_argument("--formats", default="long,wide,jsonl")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    for result in run(args.megabytes, args.formats.split(","), args.repeat):
        print(json.dumps(result), flush=True)


def run(megabytes: float, formats: list[str], repeat: int = 1):
    """One result per format, as it is measured."""
    with tempfile.TemporaryDirectory(prefix="bscore-ingest-bench-") as tmp:
        tmp = Path(tmp)
        for kind in formats:
            path = tmp / f"readings-{kind}.{'jsonl' if kind == 'jsonl' else 'csv'}"
            readings = write(fleet(int(megabytes * 1e6 / BYTES_PER_READING[kind])), kind, path)
            tiny = tmp / f"tiny-{kind}{path.suffix}"
            write(fleet(1000, seed=1), kind, tiny)
            fixed_wall, fixed_cpu = ingest(tiny, tmp / "home-tiny")
            runs = [ingest(path, tmp / f"home-{kind}-{i}") for i in range(repeat)]
            wall, cpu = min(runs)
            result = {"format": kind, "megabytes": round(path.stat().st_size / 1e6, 1), "readings": readings,
                      "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
                      "readings_per_wall_s": round(readings / wall), "readings_per_cpu_s": round(readings / cpu),
                      "fixed_wall_s": round(fixed_wall, 2), "fixed_cpu_s": round(fixed_cpu, 2),
                      "readings_per_cpu_s_beyond_fixed": round(readings / max(cpu - fixed_cpu, 1e-9)),
                      "projected_1gb_cpu_s": round(fixed_cpu + (cpu - fixed_cpu) * 1e9 / path.stat().st_size, 1),
                      "load": round(os.getloadavg()[0], 2)}
            path.unlink()
            yield result


if __name__ == "__main__":
    main()
