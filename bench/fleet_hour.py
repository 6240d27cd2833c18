"""A fleet's hour through bscore against the same hour at the I/O floor; prints JSON.

Usage::

    .venv/bin/python bench/fleet_hour.py [--sizes 400,2000 --sensors 5 --out FILE --work DIR]

For each fleet size (devices x ``--sensors``, one reading per sensor per second) it writes a
training hour and a measured hour of JSON-lines events straight into a fresh
``BSCORE_HOME``'s landing folder (in columns with pyarrow, no Python loop per event), then:

- ``train``: ``bscore train --from T --to T`` on the training hour (not part of the ratios);
- ``ingest``: bscore's own parser over the measured hour's landed files, in this process,
  in batches of whole files up to 32 MiB as the landing hands them over (readings per
  second; the drain's parse step alone);
- ``end_to_end``: ``bscore score --from H --to H`` of the measured hour, as a subprocess:
  drain, aggregate, score, write predictions;
- ``rescore``: the same command again, nothing changed;
- ``floor``: the measured hour done once with the libraries, in a subprocess: pyarrow's JSON
  reader on the landed files, raw Parquet parts, a pyarrow group-by for the ``(start, end]``
  5-second window means, ADBC bulk ingest of the windows into SQLite, the windows read back,
  predictions (a vectorized stand-in score) written to SQLite and to Parquet per sensor.

Every subprocess's wall time and peak RSS are measured: ``peak_rss_mb`` is the largest single
process of its tree (``/usr/bin/time``'s maximum resident set size) and
``peak_tree_rss_mb`` the largest sum over the tree sampled every 0.2 s (a process pool's
workers count together). The JSON ends with the ratios the issue's bars are stated in.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scoring.simulate import sensor_range  # noqa: E402

WINDOW_SECONDS = 5


# ---------------------------------------------------------------------------------- the fleet


def write_landing_hour(landing: Path, devices: int, sensors: int, hour: pd.Timestamp, first_sequence: int,
                       seconds_per_file: int, seed: int) -> tuple[int, int]:
    """Write the readings in ``(hour, hour + 1h]`` as landing files; return (readings, next sequence).

    Each file holds ``seconds_per_file`` seconds of the whole fleet, in time order, as the
    local event source's ``publish`` would have written it (one JSON object per line).
    """
    landing.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    n_series = devices * sensors
    device_ids = pa.array([str(d) for d in range(1, devices + 1)])
    sensor_ids = pa.array([str(s) for s in range(1, sensors + 1)])
    lo = np.array([sensor_range(s)[0] for s in range(1, sensors + 1)])
    width = np.array([sensor_range(s)[1] for s in range(1, sensors + 1)]) - lo
    series_device = np.repeat(np.arange(devices), sensors)
    series_sensor = np.tile(np.arange(sensors), devices)
    stamps = pd.date_range(hour + pd.Timedelta(seconds=1), periods=3600, freq="s")
    ts_text = pa.array(stamps.strftime("%Y-%m-%dT%H:%M:%S").tolist())
    sequence, total = first_sequence, 0
    for first_second in range(0, 3600, seconds_per_file):
        seconds = np.arange(first_second, min(first_second + seconds_per_file, 3600))
        rows = len(seconds) * n_series
        ts = ts_text.take(pa.array(np.repeat(seconds, n_series)))
        sensor_code = np.tile(series_sensor, len(seconds))
        device = device_ids.take(pa.array(np.tile(series_device, len(seconds))))
        sensor = sensor_ids.take(pa.array(sensor_code))
        value = np.round(lo[sensor_code] + rng.random(rows) * width[sensor_code], 4)
        lines = pc.binary_join_element_wise(
            '{"ts": "', ts, '", "device": "', device, '", "sensor": "', sensor, '", "value": ',
            pc.cast(pa.array(value), pa.string()), "}\n", "")
        offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32, count=len(lines) + 1, offset=lines.offset * 4)
        data = lines.buffers()[2].to_pybytes()[offsets[0]:offsets[-1]]
        path = landing / f"{sequence:012d}.jsonl"
        path.with_name(f".{path.name}.tmp").write_bytes(data)
        os.replace(path.with_name(f".{path.name}.tmp"), path)
        sequence += 1
        total += rows
    return total, sequence


# ------------------------------------------------------------------------------- measurements


def _tree_rss_kb(pid: int) -> int:
    """Resident set size of a process and all its descendants, in kB (0 once it is gone)."""
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        try:
            with open(f"/proc/{current}/status") as handle:
                for line in handle:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        break
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as handle:
                    stack.extend(int(child) for child in handle.read().split())
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return total


def run_measured(command: list[str], env: dict, log: Path) -> dict:
    """Run a command; its wall time, CPU seconds (user + system of every process of its tree, as
    ``wait4`` counts them), exit status and peak RSS (largest process, and tree sum).

    The command runs under ``/usr/bin/time``: Linux counts the RSS a process had before
    ``exec`` in its ``ru_maxrss``, so a child started straight from this (by then large)
    process would report this process's size; ``time`` is small.
    """
    started = time.perf_counter()
    report = log.with_name(f".{log.name}.maxrss")
    with open(log, "ab") as out:
        process = subprocess.Popen(["/usr/bin/time", "-f", "%M", "-o", str(report), *command], env=env,
                                   stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        peak_tree, done = [0], threading.Event()

        def sample():
            while not done.wait(0.2):
                peak_tree[0] = max(peak_tree[0], _tree_rss_kb(process.pid))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status, usage = os.wait4(process.pid, 0)
        done.set()
        sampler.join()
        process.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - started
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited with {process.returncode}; see {log}")
    peak = int(report.read_text().split()[-1])  # kB, the command's largest process
    return {"seconds": round(seconds, 2), "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 2),
            "peak_rss_mb": round(peak / 1024, 1),
            "peak_tree_rss_mb": round(max(peak_tree[0], peak) / 1024, 1)}


def measure_ingestion(files: list[Path], now: pd.Timestamp, batch_bytes: int = 32 << 20) -> dict:
    """bscore's own parser over landed files, in batches of whole files up to ``batch_bytes``
    as the local landing hands them to the drain."""
    try:
        from scoring.event_lines import parse_event_lines

        def parse(data):
            return parse_event_lines(data, now=now)
    except ImportError:  # the row-wise parser of earlier versions
        from scoring.readings import parse_event_bodies

        def parse(data):
            return parse_event_bodies([line for line in data.decode().split("\n") if line.strip()], now=now)

    accepted = rejected = 0
    started = time.perf_counter()
    batch: list[bytes] = []
    for i, path in enumerate(files):
        batch.append(path.read_bytes())
        if sum(map(len, batch)) >= batch_bytes or i == len(files) - 1:
            parsed = parse(b"".join(batch))
            accepted += len(parsed.readings)
            rejected += len(parsed.rejected)
            batch = []
    seconds = time.perf_counter() - started
    return {"seconds": round(seconds, 2), "readings": accepted, "rejected": rejected,
            "readings_per_second": round(accepted / seconds)}


# ------------------------------------------------------------------------------------ floor


def floor_hour(files: list[Path], work: Path, hour: pd.Timestamp) -> dict:
    """The measured hour done once with the libraries; seconds per stage."""
    import adbc_driver_sqlite.dbapi as adbc_sqlite
    import pyarrow.json as pj
    import pyarrow.parquet as pq

    stages, readings = {}, 0
    raw = work / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    schema = pa.schema([("ts", pa.string()), ("device", pa.string()), ("sensor", pa.string()),
                        ("value", pa.float64())])
    started = time.perf_counter()
    for i, path in enumerate(files):
        table = pj.read_json(path, parse_options=pj.ParseOptions(explicit_schema=schema))
        table = table.set_column(0, "ts", pc.strptime(table["ts"], "%Y-%m-%dT%H:%M:%S", "us"))
        pq.write_table(table, raw / f"part-{i:06d}.parquet", compression="zstd")
        readings += len(table)
    stages["json_to_raw_parquet"] = time.perf_counter() - started

    started = time.perf_counter()
    table = pq.read_table(raw, read_dictionary=["device", "sensor"])
    ends = pc.ceil_temporal(table["ts"], multiple=WINDOW_SECONDS, unit="second")
    windows = (table.set_column(0, "ts", ends).group_by(["device", "sensor", "ts"])
               .aggregate([("value", "mean"), ("value", "count")])
               .rename_columns(["device", "sensor", "ts", "value", "readings"]))
    del table
    stages["window_means"] = time.perf_counter() - started

    started = time.perf_counter()
    db = work / "floor.db"
    text_ts = pc.strftime(windows["ts"], "%Y-%m-%d %H:%M:%S")  # SQLAlchemy's SQLite text format
    with adbc_sqlite.connect(str(db)) as conn, conn.cursor() as cursor:
        cursor.adbc_ingest("sensor_values", windows.set_column(2, "ts", text_ts).cast(
            pa.schema([("device", pa.string()), ("sensor", pa.string()), ("ts", pa.string()),
                       ("value", pa.float64()), ("readings", pa.int64())])), mode="create")
        conn.commit()
    stages["windows_to_sqlite"] = time.perf_counter() - started

    started = time.perf_counter()
    with adbc_sqlite.connect(str(db)) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT device, sensor, ts, value, readings FROM sensor_values")
        back = cursor.fetch_arrow_table()
    back = back.set_column(2, "ts", pc.cast(back["ts"], pa.timestamp("us")))
    stages["windows_from_sqlite"] = time.perf_counter() - started

    started = time.perf_counter()
    score = pc.multiply(back["value"], 0.5)  # a stand-in: the engine's own time is in scoring_bench.py
    preds = back.drop_columns(["readings"]).append_column("score", score).append_column(
        "is_anomaly", pc.greater(score, 1e9)).append_column("model_version", pa.repeat("v1", len(back)))
    with adbc_sqlite.connect(str(db)) as conn, conn.cursor() as cursor:
        cursor.adbc_ingest("predictions", preds.set_column(2, "ts", pc.strftime(preds["ts"], "%Y-%m-%d %H:%M:%S")),
                           mode="create")
        conn.commit()
    out = work / "predictions"
    out.mkdir(exist_ok=True)
    for sensor in pc.unique(preds["sensor"]).to_pylist():
        pq.write_table(preds.filter(pc.equal(preds["sensor"], sensor)), out / f"sensor={sensor}.parquet",
                       compression="zstd")
    stages["predictions_to_sqlite_and_parquet"] = time.perf_counter() - started
    return {"readings": readings, "windows": len(windows), "stages": {k: round(v, 2) for k, v in stages.items()},
            "ingest_readings_per_second": round(readings / stages["json_to_raw_parquet"])}


# --------------------------------------------------------------------------------- one size


def bench_size(devices: int, sensors: int, work: Path, seconds_per_file: int, seed: int) -> dict:
    home = work / f"home-{devices}"
    shutil.rmtree(home, ignore_errors=True)
    landing = home / "landing"
    now = pd.Timestamp.now("UTC").tz_localize(None)
    measured = now.floor("h") - pd.Timedelta(hours=2)  # closed, past the allowed lateness
    training = measured - pd.Timedelta(hours=1)
    env = {**os.environ, "BSCORE_HOME": str(home), "PYTHONPATH": str(ROOT),
           "BSCORE_START": (training - pd.Timedelta(days=1)).strftime("%Y-%m-%dT%H:00"), "BSCORE_EVENTS": "local"}
    for name in ("BSCORE_SQL_URL", "BSCORE_BLOB_URL", "BSCORE_COMPUTE"):
        env.pop(name, None)
    cli = [sys.executable, "-m", "bscore_assets.cli"]
    hour_text = lambda h: h.strftime("%Y-%m-%dT%H")  # noqa: E731
    log = work / f"bscore-{devices}.log"
    result = {"devices": devices, "sensors": sensors, "training_hour": hour_text(training),
              "measured_hour": hour_text(measured)}

    started = time.perf_counter()
    _, sequence = write_landing_hour(landing, devices, sensors, training, 1, seconds_per_file, seed)
    result["train"] = run_measured(cli + ["train", "--from", hour_text(training), "--to", hour_text(training)],
                                   env, log)
    readings, _ = write_landing_hour(landing, devices, sensors, measured, sequence, seconds_per_file, seed + 1)
    files = sorted(p for p in landing.glob("*.jsonl") if int(p.stem) >= sequence)
    result["readings_per_hour"] = readings
    result["landing_bytes"] = sum(p.stat().st_size for p in files)
    result["simulate_seconds"] = round(time.perf_counter() - started - result["train"]["seconds"], 2)

    result["ingest"] = measure_ingestion(files, now)
    floor_dir = work / f"floor-{devices}"
    shutil.rmtree(floor_dir, ignore_errors=True)
    floor_dir.mkdir()
    listing = floor_dir / "files.json"
    listing.write_text(json.dumps([str(p) for p in files]))
    floor_out = floor_dir / "floor.json"
    result["floor"] = run_measured([sys.executable, str(Path(__file__).resolve()), "--floor-only", str(listing),
                                    str(floor_out), hour_text(measured)], env, log)
    result["floor"].update(json.loads(floor_out.read_text()))
    shutil.rmtree(floor_dir / "raw", ignore_errors=True)

    score = cli + ["score", "--from", hour_text(measured), "--to", hour_text(measured)]
    result["end_to_end"] = run_measured(score, env, log)
    result["rescore"] = run_measured(score, env, log)
    result["ratios"] = {
        "end_to_end_over_floor": round(result["end_to_end"]["seconds"] / result["floor"]["seconds"], 2),
        "end_to_end_cpu_over_floor": round(result["end_to_end"]["cpu_seconds"] / result["floor"]["cpu_seconds"], 2),
        "rescore_over_first": round(result["rescore"]["seconds"] / result["end_to_end"]["seconds"], 3),
    }
    return result


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="400,2000", help="fleet sizes in devices, comma-separated")
    parser.add_argument("--devices", type=int, default=None, help="one fleet size (overrides --sizes)")
    parser.add_argument("--sensors", type=int, default=5)
    parser.add_argument("--seconds-per-file", type=int, default=None,
                        help="seconds of the fleet per landing file (default: about 100,000 events per file)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default=None, help="working folder (default: a temporary one, removed)")
    parser.add_argument("--out", default=None, help="also write the JSON here")
    parser.add_argument("--floor-only", nargs=3, metavar=("FILES_JSON", "OUT_JSON", "HOUR"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.floor_only:
        listing, out, hour = args.floor_only
        files = [Path(p) for p in json.loads(Path(listing).read_text())]
        Path(out).write_text(json.dumps(floor_hour(files, Path(out).parent, pd.Timestamp(hour))))
        return {}

    sizes = [args.devices] if args.devices else [int(s) for s in args.sizes.split(",")]
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="bscore-fleet-"))
    work.mkdir(parents=True, exist_ok=True)
    report = {"command": " ".join([Path(sys.executable).name] + sys.argv), "machine": {
        "cpus": os.cpu_count(), "python": platform.python_version(), "pyarrow": pa.__version__}, "sizes": {}}
    try:
        for devices in sizes:
            per_file = args.seconds_per_file or max(1, 100_000 // (devices * args.sensors))
            report["sizes"][str(devices)] = bench_size(devices, args.sensors, work, per_file, args.seed)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    runs = report["sizes"]
    small, large = runs[str(min(sizes))], runs[str(max(sizes))]
    report["summary"] = {
        "devices": max(sizes),
        "end_to_end_seconds": large["end_to_end"]["seconds"],
        "floor_seconds": large["floor"]["seconds"],
        "end_to_end_over_floor": large["ratios"]["end_to_end_over_floor"],
        "end_to_end_cpu_over_floor": large["ratios"]["end_to_end_cpu_over_floor"],
        "end_to_end_peak_rss_mb": large["end_to_end"]["peak_rss_mb"],
        "end_to_end_peak_tree_rss_mb": large["end_to_end"]["peak_tree_rss_mb"],
        "rss_largest_over_smallest_fleet": round(large["end_to_end"]["peak_rss_mb"]
                                                 / small["end_to_end"]["peak_rss_mb"], 3),
        "ingest_readings_per_second": large["ingest"]["readings_per_second"],
        "floor_ingest_readings_per_second": large["floor"]["ingest_readings_per_second"],
        "rescore_over_first": large["ratios"]["rescore_over_first"],
    }
    return emit_report(report, args.out)


def emit_report(report: dict, out: str | None) -> dict:
    """Print the report as JSON, and write it to ``out`` too when given."""
    text = json.dumps(report, indent=2)
    print(text)
    if out:
        Path(out).write_text(text)
    return report


if __name__ == "__main__":
    main()
