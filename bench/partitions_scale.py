"""How Dagster's automation tick and partition bookkeeping grow with ``sensor_predictions``'
hour x sensor partitions (issue 20: partitions that last years).

Usage::

    PYTHONPATH=. .venv/bin/python bench/partitions_scale.py [--sensors 50 --hours 24,720,2000,8760]

For each history length, a fresh Dagster instance (in a temporary folder) whose hourly
partitions start that many hours before the evaluation time, with ``--sensors`` sensor names
registered, and bscore's own definitions: prints the partitions of ``sensor_predictions``, the
seconds of three Declarative Automation ticks in a row (``dg.evaluate_automation_conditions``, what
the daemon's automation sensor runs, each carrying the last one's cursor, serialized as the daemon
stores it) and of listing the asset's partition keys. Nothing is materialized: this is the
bookkeeping's floor. The first tick's cursor holds every partition (the initial evaluation), so
the second tick, which reads it, pays for the whole history once; from the third on, the
cursors hold the look-back's partitions only.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

NOW = pd.Timestamp("2027-06-01T00:30")


def measure(hours: int, sensors: int) -> dict:
    import dagster as dg
    from dagster_shared.serdes import serialize_value

    from bscore_assets.definitions import build_defs
    from bscore_assets.partitions import sensor_partitions_def
    from bscore_assets.settings import Settings

    with tempfile.TemporaryDirectory(prefix="bscore-partitions-") as home:
        settings = dataclasses.replace(Settings.from_env({"BSCORE_HOME": home}),
                                       start=NOW.floor("h") - pd.Timedelta(hours=hours))
        defs = build_defs(settings)
        instance = dg.DagsterInstance.ephemeral()
        instance.add_dynamic_partitions(sensor_partitions_def.name, [f"s{i:03d}" for i in range(sensors)])
        key = dg.AssetKey("sensor_predictions")
        partitions_def = defs.resolve_assets_def(key).partitions_def
        started = time.perf_counter()
        keys = partitions_def.get_partition_keys(dynamic_partitions_store=instance,
                                                 current_time=NOW.tz_localize("UTC").to_pydatetime())
        listed = time.perf_counter() - started
        ticks, cursor = [], None
        for _ in range(3):
            started = time.perf_counter()
            result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor,
                                                       evaluation_time=NOW.tz_localize("UTC").to_pydatetime())
            ticks.append(round(time.perf_counter() - started, 2))
            cursor = result.cursor
        return {"hours": hours, "sensors": sensors, "partitions": len(keys), "list_seconds": round(listed, 2),
                "first_tick_seconds": ticks[0], "second_tick_seconds": ticks[1], "third_tick_seconds": ticks[2],
                "cursor_bytes": len(serialize_value(cursor))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sensors", type=int, default=50, help="sensor names registered")
    parser.add_argument("--hours", default="24,720,2000,8760", help="history lengths in hours, comma-separated")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    for hours in (int(h) for h in args.hours.split(",")):
        print(json.dumps(measure(hours, args.sensors)), flush=True)


if __name__ == "__main__":
    main()
