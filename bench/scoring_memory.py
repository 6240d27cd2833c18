"""Peak memory of one scored hour against the fleet size: the run moves names, not data.

For each fleet size, on a fresh ``BSCORE_HOME``: one hour of 5-second windows written straight
to SQL (``sensor_values``) and a current SVM bundle per device written straight to the model
store (synthetic: 3 support vectors per sensor, flagging the 1 % of windows planted 10 sigma off), so the setup costs seconds
rather than a drain and a training run. Then, in a process of its own, ``sensor_predictions``
scores the hour through Dagster as ``bscore score`` does after bringing the hour up to date
(``Operations.score(..., refresh=False)``), on the local process pool or on the Azure ML stand-in
of ``tests/resources/test_azureml_pipes.py`` (jobs as local processes, Pipes on Azurite). It
prints JSON: per size, the run process's own peak RSS, the largest shard worker's (local pool)
or job's peak RSS, the whole process tree's peak (the run and its workers together, sampled
every 0.2 s, as proportional set sizes so that shared pages count once) and wall time. ``--hours 24`` writes and scores 24 hours in one call, as a backfill
does (issue 20's bar: a 24-hour backfill at 400 devices within 1.5 GB for the tree).

    PYTHONPATH=. .venv/bin/python bench/scoring_memory.py --devices 400 2000 --backend local
    PYTHONPATH=. .venv/bin/python bench/scoring_memory.py --devices 400 2000 --backend azureml
    PYTHONPATH=. .venv/bin/python bench/scoring_memory.py --devices 400 --hours 24
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
HOUR = pd.Timestamp("2026-03-01T01:00")
SENSORS = [str(s) for s in range(1, 6)]


def setup(home: Path, devices: int, hours: int = 1) -> None:
    """The hours' windows in SQL, a current bundle per device, the dynamic partitions."""
    os.environ["BSCORE_HOME"] = str(home)
    from bscore_assets.operations import local_instance
    from bscore_assets.partitions import device_partitions_def, sensor_partitions_def
    from bscore_assets.settings import Settings
    from resources.blob import LocalBlobStore
    from resources.sql import SqlStore
    from scoring.model_format import ModelBundle, SensorModel
    from scoring.model_store import save_bundle

    settings = Settings.from_env()
    rng = np.random.default_rng(7)
    names = [f"dev{d:05d}" for d in range(devices)]
    ends = HOUR + pd.to_timedelta(np.arange(1, 720 * hours + 1) * 5, unit="s")
    sql = SqlStore(url=settings.sql_url)
    per_frame = max(1, 500 // hours)  # a frame of 500 device-hours at a time
    for chunk in range(0, devices, per_frame):
        group = names[chunk:chunk + per_frame]
        index = pd.MultiIndex.from_product([group, SENSORS, ends], names=["device", "sensor", "ts"])
        frame = index.to_frame(index=False)
        frame["value"] = rng.normal(30, 3, len(frame))
        planted = rng.random(len(frame)) < 0.01  # 1 % anomalies, 10 sigma off: plots get drawn
        frame.loc[planted, "value"] = 60.0
        frame["readings"] = 5
        frame = frame[["ts", "device", "sensor", "value", "readings"]]
        with sql.engine.begin() as conn:
            from resources.sql import bulk_insert, sensor_values

            bulk_insert(conn, sensor_values, frame)
    blob = LocalBlobStore(root=settings.blob_url)
    for device in names:
        models = {s: SensorModel(mean=np.array([30.0]), scale=np.array([3.0]),
                                 support_vectors=rng.normal(0, 1, (3, 1)), dual_coef=np.full(3, 1 / 3),
                                 intercept=-0.5) for s in SENSORS}
        save_bundle(blob, ModelBundle(device, "v1", models))
    instance = local_instance(settings)
    instance.add_dynamic_partitions(sensor_partitions_def.name, SENSORS)
    instance.add_dynamic_partitions(device_partitions_def.name, names)


def score(home: Path, backend: str, azurite_connection: str | None, hours: int = 1) -> dict:
    """Score the hours in this process; the peak RSS of this process, of its largest child and
    of the whole tree."""
    import resource
    import threading

    import psutil

    tree_peak, done = [0], threading.Event()

    def sample_tree():
        me = psutil.Process()
        while not done.wait(0.2):
            total = 0
            for process in [me, *me.children(recursive=True)]:
                try:  # proportional set size: libraries the processes share are counted once
                    total += process.memory_full_info().pss
                except psutil.Error:  # a worker that ended between listing and reading
                    pass
            tree_peak[0] = max(tree_peak[0], total)

    sampler = threading.Thread(target=sample_tree, daemon=True)
    sampler.start()

    os.environ["BSCORE_HOME"] = str(home)
    from bscore_assets.operations import Operations, local_instance
    from bscore_assets.settings import Settings
    from definitions import build_defs

    settings = Settings.from_env()
    ops = Operations(settings, build_defs(settings), local_instance(settings))
    if backend == "azureml":
        import dagster as dg

        from tests.resources.test_azureml_pipes import StandInAzureMLBackend

        # What the cluster's managed identity is to a real job: the job process's own credential.
        os.environ["AZURE_STORAGE_CONNECTION_STRING"] = azurite_connection

        account = "http://127.0.0.1:" + azurite_connection.split("127.0.0.1:")[1].split("/")[0] + "/devstoreaccount1"
        compute = StandInAzureMLBackend(
            subscription_id="0", resource_group="rg", workspace_name="ws", storage_account_url=account,
            storage_connection_string=azurite_connection, container="bench-pipes", devices_per_shard=500,
            max_jobs_in_flight=2, poll_interval_seconds=0.5, message_interval_seconds=1.0,
            jobs_dir=str(home / "azureml-jobs"))
        defs = ops.defs
        ops = Operations(settings, dg.Definitions(assets=defs.assets, jobs=defs.jobs, asset_checks=defs.asset_checks,
                                                  resources={**defs.resources, "compute": compute}), ops.instance)
    started = time.perf_counter()
    *_, report = ops.score(HOUR, HOUR + pd.Timedelta(hours=hours - 1), refresh=False)
    done.set()
    sampler.join()
    return {"hours": hours, "rows_scored": report.totals["sensor_predictions.rows_scored"],
            "wall_seconds": round(time.perf_counter() - started, 1),
            "run_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "largest_child_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024),
            "tree_peak_pss_mb": round(tree_peak[0] / 2**20)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", type=int, nargs="+", default=[400, 2000])
    parser.add_argument("--backend", choices=["local", "azureml"], default="local")
    parser.add_argument("--hours", type=int, default=1, help="hours written and scored in one call (a backfill)")
    parser.add_argument("--azurite", help="Azurite connection string (azureml backend)")
    parser.add_argument("--step", choices=["setup", "score"], help=argparse.SUPPRESS)
    parser.add_argument("--home", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step == "setup":
        return setup(Path(args.home), args.devices[0], args.hours)
    if args.step == "score":
        print(json.dumps(score(Path(args.home), args.backend, args.azurite, args.hours)))
        return
    azurite = None
    if args.backend == "azureml" and not args.azurite:
        sys.path.insert(0, str(ROOT))
        from tests.conftest import start_azurite

        azurite = start_azurite(Path(tempfile.mkdtemp(prefix="bscore-azurite-")))
        args.azurite = azurite.connection_string
    try:
        results = run_sizes(args)
    finally:
        if azurite is not None:
            from tests.conftest import stop_azurite

            stop_azurite(azurite)
    print(json.dumps({"backend": args.backend, "sensors": len(SENSORS), "windows_per_model": 720,
                      "by_devices": results}, indent=2))


def run_sizes(args) -> dict:
    results = {}
    for devices in args.devices:
        with tempfile.TemporaryDirectory(prefix="bscore-memory-") as tmp:
            base = [sys.executable, __file__, "--home", tmp, "--devices", str(devices), "--backend", args.backend,
                    "--hours", str(args.hours)]
            env = {**os.environ, "PYTHONPATH": str(ROOT)}
            subprocess.run(base + ["--step", "setup"], check=True, env=env, cwd=ROOT)
            extra = ["--azurite", args.azurite] if args.azurite else []
            out = subprocess.run(base + ["--step", "score"] + extra, check=True, env=env, cwd=ROOT,
                                 stdout=subprocess.PIPE, text=True).stdout
            results[devices] = json.loads(out.strip().splitlines()[-1])
            print(devices, results[devices], file=sys.stderr)
    return results


if __name__ == "__main__":
    main()
