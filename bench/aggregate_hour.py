"""The drain and the aggregation of one fleet hour, each timed in its own process; prints JSON.

Usage::

    .venv/bin/python bench/aggregate_hour.py [--devices 400 --sensors 5 --work DIR --out FILE]

Writes one hour of the fleet's readings (devices x ``--sensors``, one per second) as landing
files, as ``bench/fleet_hour.py`` does (``write_landing_hour``), then runs in a subprocess each:

- ``drain``: ``drain_events`` from the local landing into local raw parts;
- ``aggregate``: ``aggregate_hour`` of that hour into a fresh SQLite file (5-second windows).

Each gets its wall time and peak RSS (``/usr/bin/time``'s maximum resident set size, see
``fleet_hour.run_measured``); the stages' own seconds, measured inside, leave out start-up.
Memory that does not grow with the fleet shows as ``aggregate.peak_rss_mb`` staying put across
``--devices``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.fleet_hour import emit_report, run_measured, write_landing_hour  # noqa: E402


def run_stage(stage: str, home: Path, hour: pd.Timestamp) -> dict:
    """One stage in this process; its own seconds and counts."""
    from bscore_assets.aggregation.assets import aggregate_hour
    from bscore_assets.ingestion.drain import drain_events
    from resources.blob import LocalBlobStore
    from resources.events import LocalEventSource
    from resources.sql import SqlStore

    blob = LocalBlobStore(root=str(home / "blob"))
    started = time.perf_counter()
    if stage == "drain":
        summary = drain_events(LocalEventSource(landing=str(home / "landing")), blob)
        counts = {"batches": summary.batches, "accepted": summary.accepted, "rejected": summary.rejected,
                  "parts": len(blob.list("raw/"))}
    else:
        sql = SqlStore(url=f"sqlite:///{home / 'bscore.db'}")
        meta = aggregate_hour(blob, sql, hour, 5)
        counts = {k: meta[k] for k in ("windows", "readings", "devices", "sensors", "stored")}
    return {"stage_seconds": round(time.perf_counter() - started, 2), **counts}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", type=int, default=400)
    parser.add_argument("--sensors", type=int, default=5)
    parser.add_argument("--work", default=None, help="working folder (default: a temporary one, removed)")
    parser.add_argument("--out", default=None, help="also write the JSON here")
    parser.add_argument("--stage", nargs=3, metavar=("STAGE", "HOME", "HOUR"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.stage:
        stage, home, hour = args.stage
        print(json.dumps(run_stage(stage, Path(home), pd.Timestamp(hour))))
        return {}

    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="bscore-agg-"))
    home = work / f"home-{args.devices}"
    shutil.rmtree(home, ignore_errors=True)
    hour = pd.Timestamp.now("UTC").tz_localize(None).floor("h") - pd.Timedelta(hours=2)
    per_file = max(1, 100_000 // (args.devices * args.sensors))
    readings, _ = write_landing_hour(home / "landing", args.devices, args.sensors, hour, 1, per_file, seed=1)
    report = {"command": " ".join([Path(sys.executable).name] + sys.argv), "devices": args.devices,
              "sensors": args.sensors, "readings": readings}
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    try:
        for stage in ("drain", "aggregate"):
            log = work / f"{stage}-{args.devices}.log"
            log.unlink(missing_ok=True)
            command = [sys.executable, str(Path(__file__).resolve()), "--stage", stage, str(home), hour.isoformat()]
            report[stage] = run_measured(command, env, log)
            report[stage].update(json.loads(log.read_text().strip().splitlines()[-1]))
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    return emit_report(report, args.out)


if __name__ == "__main__":
    main()
