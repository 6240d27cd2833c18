"""Benchmark of the device vote (``scoring.verdicts.device_verdicts``) on one synthetic fleet
hour; prints JSON.

Usage::

    .venv/bin/python bench/verdicts_bench.py [--devices 2000 --sensors 5 --windows 720
                                              --anomaly-rate 0.01 --repeat 3]

It times the vote on the hour's predictions as the asset reads them (Parquet parts sorted by
device, sensor and ts, ids read dictionary-encoded), as plain Arrow strings and as a pandas
frame; wall and CPU seconds, best of ``--repeat`` (the CPU time is what the vote costs on a
machine shared with other work).
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scoring.verdicts import device_verdicts  # noqa: E402


def fleet_hour(devices: int, sensors: int, windows: int, anomaly_rate: float, seed: int = 0) -> pa.Table:
    """An hour's predictions, in the parts' order (device, sensor, ts)."""
    rng = np.random.default_rng(seed)
    rows = devices * sensors * windows
    ts = pd.Timestamp("2026-01-01").value + (np.arange(windows) + 1) * (3600 // windows) * 1_000_000_000
    return pa.table({
        "ts": pa.array(np.tile(ts, devices * sensors).astype("datetime64[ns]")),
        "device": pa.array(np.repeat([f"dev-{i:05d}" for i in range(devices)], sensors * windows)),
        "sensor": pa.array(np.tile(np.repeat([f"s{j}" for j in range(sensors)], windows), devices)),
        "value": rng.random(rows), "score": rng.random(rows),
        "is_anomaly": rng.random(rows) < anomaly_rate,
        "model_version": pa.array(np.full(rows, "v1")),
    })


def timed(function, repeat: int) -> dict:
    best_wall = best_cpu = float("inf")
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        function()
        best_wall, best_cpu = min(best_wall, time.perf_counter() - wall), min(best_cpu, time.process_time() - cpu)
    return {"wall_seconds": round(best_wall, 3), "cpu_seconds": round(best_cpu, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=2000)
    parser.add_argument("--sensors", type=int, default=5)
    parser.add_argument("--windows", type=int, default=720)
    parser.add_argument("--anomaly-rate", type=float, default=0.01)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    table = fleet_hour(args.devices, args.sensors, args.windows, args.anomaly_rate)
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    parts = pq.read_table(io.BytesIO(buffer.getvalue()), columns=["ts", "device", "sensor", "is_anomaly"],
                          read_dictionary=["device", "sensor"])
    frame = table.to_pandas()
    verdicts = device_verdicts(parts)
    assert verdicts.equals(device_verdicts(table)), "the vote differs between encodings"
    report = {
        "command": " ".join([Path(sys.executable).name] + sys.argv),
        "predictions": len(table), "device_windows": len(verdicts),
        "anomalous_device_windows": int(verdicts["is_anomaly"].to_numpy().sum()),
        "dictionary_parts": timed(lambda: device_verdicts(parts), args.repeat),
        "arrow_strings": timed(lambda: device_verdicts(table), args.repeat),
        "pandas_frame": timed(lambda: device_verdicts(frame), args.repeat),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
