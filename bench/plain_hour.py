"""A landed fleet hour the plain way (DuckDB, a numpy loop, Parquet) against ``bscore score``; prints JSON.

Usage::

    .venv/bin/python bench/plain_hour.py [--devices 400 --sensors 5 --pairs 3 --out FILE --work DIR]

The plain pipeline is the script a data engineer writes in an afternoon for the same hour
(``plain_hour`` below): DuckDB reads the landed JSON-lines readings and makes the ``(start, end]``
5-second windows' means, minimums and maximums; a loop over the (device, sensor) series scores
each with its device's current model from bscore's model store, through the robust kind's own
``series_scores`` (the kind ``bscore train`` fits by default), on the window and the 6 minutes
before the hour that the kind judges against; pyarrow writes one Parquet file per sensor. It
stores no raw parts, SQL rows, verdicts, checks or run history: bscore's extra work is what
the figures price.

The fleet is ``fleet_hour.py``'s (one reading per sensor per second). ``bscore train`` fits the
hour before the measured one; then ``--pairs`` pairs run, alternating which goes first: a fresh
copy of the trained home (landing files and blobs hard-linked, databases copied) scored with
``bscore score --from H --to H``, and the plain script. Each reports wall seconds, CPU seconds
(user + system of its whole process tree, from ``wait4``) and peak RSS. Then the last pair's
predictions are compared window by window (same windows, same flags, score differences), and
the last bscore home is scored again with nothing changed, with what that re-score wrote.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path[:0] = [str(ROOT), str(BENCH)]

from fleet_hour import write_landing_hour  # noqa: E402

CONTEXT = pd.Timedelta(minutes=6)  # what the robust kind judges a window against (scoring.shard_task)


# ----------------------------------------------------------------------- the afternoon script


def plain_hour(files: list[str], hour: pd.Timestamp, blob_root: str, out: Path) -> dict:
    """Window means, minimums and maximums with DuckDB, each series scored in a loop, Parquet out."""
    import duckdb
    import pyarrow as pa
    import pyarrow.parquet as pq

    from scoring.blobs import FolderBlobs
    from scoring.detectors.robust import RobustModel, series_scores
    from scoring.model_store import load_current_bundles

    windows = duckdb.sql(
        """
        SELECT device, sensor,
               time_bucket(INTERVAL 5 SECOND, ts - INTERVAL 1 MICROSECOND) + INTERVAL 5 SECOND AS window_end,
               avg(value) AS value, min(value) AS low, max(value) AS high
        FROM read_json($files, format = 'newline_delimited',
                       columns = {ts: 'TIMESTAMP', device: 'VARCHAR', sensor: 'VARCHAR', value: 'DOUBLE'})
        WHERE ts > $start AND ts <= $end
        GROUP BY ALL
        ORDER BY device, sensor, window_end
        """,
        params={"files": files, "start": hour - CONTEXT, "end": hour + pd.Timedelta(hours=1)},
    ).df()

    bundles = load_current_bundles(FolderBlobs(blob_root), sorted(windows["device"].unique()))
    scored = []
    for (device, sensor), series in windows.groupby(["device", "sensor"], sort=False):
        bundle = bundles.get(device)
        model = bundle.models.get(sensor) if bundle else None
        if model is None:
            continue
        if not isinstance(model, RobustModel):
            raise ValueError(f"device {device} sensor {sensor}: a {type(model).__name__}; this script scores "
                             "the robust kind only")
        score = series_scores(series["value"].to_numpy(), np.array([len(series)]), np.array([model.row()]),
                              model.lag, model.width, model.horizon, series["low"].to_numpy(),
                              series["high"].to_numpy())
        scored.append(series.assign(score=score, is_anomaly=score < 0, model_version=bundle.version))
    predictions = pd.concat(scored, ignore_index=True)
    predictions = predictions[predictions["window_end"] > hour].rename(columns={"window_end": "ts"})
    predictions = predictions[["ts", "device", "sensor", "value", "score", "is_anomaly", "model_version"]]

    out.mkdir(parents=True, exist_ok=True)
    for sensor, rows in predictions.groupby("sensor"):
        pq.write_table(pa.Table.from_pandas(rows, preserve_index=False), out / f"sensor={sensor}.parquet",
                       compression="zstd")
    return {"windows": int(len(predictions)), "anomalies": int(predictions["is_anomaly"].sum())}


# ------------------------------------------------------------------------------ measurements


def run_measured(command: list[str], env: dict, log: Path) -> dict:
    """Run a command; wall seconds, CPU seconds of its process tree and its largest process's peak RSS.

    Under ``/usr/bin/time``, which is small: Linux counts the RSS a process had before ``exec`` in
    its ``ru_maxrss``. ``wait4`` reports the tree's CPU (every reaped descendant is counted).
    """
    started = time.perf_counter()
    report = log.with_name(f".{log.name}.maxrss")
    with open(log, "ab") as out:
        process = subprocess.Popen(["/usr/bin/time", "-f", "%M", "-o", str(report), *command], env=env,
                                   stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(command)} exited with {os.waitstatus_to_exitcode(status)}; see {log}")
    return {"seconds": round(seconds, 2), "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 2),
            "peak_rss_mb": round(int(report.read_text().split()[-1]) / 1024, 1)}


def fresh_home(template: Path, home: Path) -> None:
    """A copy of the trained home: landing files and blobs hard-linked (bscore replaces files, never
    rewrites them), databases and the Dagster instance copied."""
    shutil.rmtree(home, ignore_errors=True)

    def link_or_copy(src, dst):
        relative = Path(src).relative_to(template).parts[0]
        (os.link if relative in ("landing", "blob") else shutil.copy2)(src, dst)

    shutil.copytree(template, home, copy_function=link_or_copy)


def footprint(home: Path) -> dict[str, tuple[int, int]]:
    """Every file under a home: its size and modification time."""
    return {str(path.relative_to(home)): (path.stat().st_size, path.stat().st_mtime_ns)
            for path in home.rglob("*") if path.is_file()}


def footprint_change(before: dict, after: dict) -> dict:
    """Per top-level entry of a home (a database with its journal): files added, removed and
    rewritten, and the change in bytes."""
    change: dict[str, dict] = {}
    for name in sorted(set(before) | set(after)):
        top = Path(name).parts[0].split("-journal")[0].split("-wal")[0]
        entry = change.setdefault(top, {"added": 0, "removed": 0, "rewritten": 0, "bytes": 0})
        if name not in before:
            entry["added"] += 1
        elif name not in after:
            entry["removed"] += 1
        elif after[name] != before[name]:
            entry["rewritten"] += 1
        entry["bytes"] += after.get(name, (0, 0))[0] - before.get(name, (0, 0))[0]
    return change


def bscore_predictions(home: Path, hour: pd.Timestamp) -> pd.DataFrame:
    """Every prediction part bscore wrote for the hour (a fresh home holds one run's parts only)."""
    import pyarrow.parquet as pq

    from scoring.blob_layout import prediction_hour_prefix

    folder = home / "blob" / prediction_hour_prefix(hour)
    parts = sorted(folder.rglob("part-*.parquet"))
    if not parts:
        raise RuntimeError(f"no prediction parts under {folder}")
    return pd.concat([pq.read_table(p).to_pandas() for p in parts], ignore_index=True)


def compare(bscore: pd.DataFrame, plain: pd.DataFrame) -> dict:
    """The two pipelines' predictions window by window."""
    keys = ["device", "sensor", "ts"]
    for frame in (bscore, plain):
        frame["device"], frame["sensor"] = frame["device"].astype(str), frame["sensor"].astype(str)
        frame["ts"] = pd.to_datetime(frame["ts"]).astype("datetime64[us]")
    both = bscore.merge(plain, on=keys, suffixes=("_bscore", "_plain"))
    return {
        "windows_bscore": int(len(bscore)), "windows_plain": int(len(plain)), "windows_in_both": int(len(both)),
        "anomalies_bscore": int(bscore["is_anomaly"].sum()), "anomalies_plain": int(plain["is_anomaly"].sum()),
        "flags_differ": int((both["is_anomaly_bscore"] != both["is_anomaly_plain"]).sum()),
        "max_abs_value_difference": float(np.abs(both["value_bscore"] - both["value_plain"]).max()),
        "max_abs_score_difference": float(np.abs(both["score_bscore"] - both["score_plain"]).max()),
        "model_versions_differ": int((both["model_version_bscore"].astype(str)
                                      != both["model_version_plain"].astype(str)).sum()),
    }


# ------------------------------------------------------------------------------------ the bench


def bench(devices: int, sensors: int, pairs: int, work: Path, seed: int) -> dict:
    template, landed = work / "template", work / "landed"
    for folder in (template, landed):
        shutil.rmtree(folder, ignore_errors=True)
    now = pd.Timestamp.now("UTC").tz_localize(None)
    measured = now.floor("h") - pd.Timedelta(hours=2)  # closed, past the allowed lateness
    training = measured - pd.Timedelta(hours=1)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BSCORE_EVENTS": "local",
           "BSCORE_START": (training - pd.Timedelta(days=1)).strftime("%Y-%m-%dT%H:00")}
    for name in ("BSCORE_SQL_URL", "BSCORE_BLOB_URL", "BSCORE_COMPUTE"):
        env.pop(name, None)
    cli = [sys.executable, "-m", "bscore_assets.cli"]
    hour_text = lambda h: h.strftime("%Y-%m-%dT%H")  # noqa: E731
    log = work / "runs.log"
    per_file = max(1, 100_000 // (devices * sensors))

    # Readings land in their own folder, linked into the home's landing: the drain may remove its
    # files, and the plain script reads the hour before the measured one too (its last minutes).
    _, sequence = write_landing_hour(landed, devices, sensors, training, 1, per_file, seed)
    (template / "landing").mkdir(parents=True)
    for path in landed.glob("*.jsonl"):
        os.link(path, template / "landing" / path.name)
    train = run_measured(cli + ["train", "--from", hour_text(training), "--to", hour_text(training)],
                         {**env, "BSCORE_HOME": str(template)}, log)
    readings, _ = write_landing_hour(landed, devices, sensors, measured, sequence, per_file, seed + 1)
    for path in landed.glob("*.jsonl"):
        if int(path.stem) >= sequence:
            os.link(path, template / "landing" / path.name)
    context_files = -(-int(CONTEXT.total_seconds()) // per_file) + 1
    files = sorted(str(p) for p in landed.glob("*.jsonl") if int(p.stem) >= sequence - context_files)

    listing = work / "files.json"
    listing.write_text(json.dumps(files))
    score = cli + ["score", "--from", hour_text(measured), "--to", hour_text(measured)]
    runs = []
    for pair in range(pairs):
        home, plain_out = work / f"home-{pair}", work / f"plain-{pair}"
        shutil.rmtree(plain_out, ignore_errors=True)
        fresh_home(template, home)
        plain_command = [sys.executable, str(Path(__file__).resolve()), "--plain-only", str(listing),
                         hour_text(measured), str(template / "blob"), str(plain_out)]
        order = ("bscore", "plain") if pair % 2 == 0 else ("plain", "bscore")
        run = {"first": order[0]}
        for which in order:
            run[which] = (run_measured(score, {**env, "BSCORE_HOME": str(home)}, log) if which == "bscore"
                          else run_measured(plain_command, env, log))
        run["cpu_ratio"] = round(run["bscore"]["cpu_seconds"] / run["plain"]["cpu_seconds"], 2)
        runs.append(run)
        if pair < pairs - 1:
            shutil.rmtree(home)

    last_home = work / f"home-{pairs - 1}"
    plain = pd.concat([pd.read_parquet(p) for p in sorted((work / f"plain-{pairs - 1}").glob("*.parquet"))],
                      ignore_index=True)
    comparison = compare(bscore_predictions(last_home, measured), plain)
    before = footprint(last_home)
    rescore = run_measured(score, {**env, "BSCORE_HOME": str(last_home)}, log)
    rescore["written"] = footprint_change(before, footprint(last_home))

    cpu = {which: [r[which]["cpu_seconds"] for r in runs] for which in ("bscore", "plain")}
    return {
        "devices": devices, "sensors": sensors, "readings_per_hour": readings, "measured_hour": hour_text(measured),
        "train": train, "pairs": runs, "rescore": rescore, "comparison": comparison,
        "summary": {
            "bscore_cpu_seconds_median": statistics.median(cpu["bscore"]),
            "plain_cpu_seconds_median": statistics.median(cpu["plain"]),
            "cpu_ratio_median": statistics.median(r["cpu_ratio"] for r in runs),
            "wall_ratio_median": statistics.median(round(r["bscore"]["seconds"] / r["plain"]["seconds"], 2)
                                                   for r in runs),
            "same_windows": comparison["windows_bscore"] == comparison["windows_plain"] == comparison["windows_in_both"],
            "same_flags": comparison["flags_differ"] == 0,
        },
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", type=int, default=400)
    parser.add_argument("--sensors", type=int, default=5)
    parser.add_argument("--pairs", type=int, default=3, help="bscore / plain pairs, alternating which runs first")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default=None, help="working folder (default: a temporary one, removed)")
    parser.add_argument("--out", default=None, help="also write the JSON here")
    parser.add_argument("--plain-only", nargs=4, metavar=("FILES_JSON", "HOUR", "BLOB_ROOT", "OUT_DIR"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.plain_only:
        listing, hour, blob_root, out = args.plain_only
        result = plain_hour(json.loads(Path(listing).read_text()), pd.Timestamp(hour), blob_root, Path(out))
        print(json.dumps(result))
        return result
    if args.pairs < 1 or args.devices < 1 or args.sensors < 1:
        parser.error("--pairs, --devices and --sensors must be at least 1")

    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="bscore-plain-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        report = {"command": " ".join([Path(sys.executable).name] + sys.argv),
                  "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                              "load_average": os.getloadavg()},
                  **bench(args.devices, args.sensors, args.pairs, work, args.seed)}
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return report


if __name__ == "__main__":
    main()
