"""Benchmark of the batch scorer against scikit-learn loops and the reference's way; prints JSON.

Usage::

    .venv/bin/python bench/scoring_bench.py [--devices 2000 --sensors 5 --rows-per-model 720
                                             --sample-processes 3 --repeat 3 --out FILE]

On one synthetic fleet (real fitted scikit-learn pipelines, the reference's
StandardScaler + OneClassSVM(nu=0.0001, rbf, gamma=0.01), one hour of 5 s windows per
model) it times, on the same models and rows: (a) the engine (``score_shard``, scoring
alone); (b) the best plain scikit-learn loop: group the table once by device and sensor,
then ``predict`` per model; (c) the reference's way, one fresh Python process per model that
reads the whole input CSV, unpickles its model, predicts and writes its CSV, timed on a
sample of models and extrapolated to all; (d) the I/O floor: read the input Parquet and
write the output Parquet with no scoring; and the engine with that I/O. Times are the best
of ``--repeat`` runs, except (b) and (c). The environment is taken as it is (no BLAS
variables are changed) and reported, with threadpoolctl's view of the native thread pools.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import sklearn
import threadpoolctl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scoring import engine  # noqa: E402
from scoring.engine import BundleModels, score_shard  # noqa: E402
from scoring.model_format import ModelBundle, SensorModel  # noqa: E402
from scoring.simulate import sensor_range  # noqa: E402
from scoring.training import SvmParams, build_pipeline  # noqa: E402

START = pd.Timestamp("2026-01-01T00:00")


def build_fleet(devices: int, sensors: int, train_rows: int, seed: int):
    """Fitted pipelines per (device, sensor) and the same models as bundles."""
    rng = np.random.default_rng(seed)
    pipelines, bundles = {}, {}
    for d in range(devices):
        device = f"dev{d:05d}"
        models = {}
        for s in range(1, sensors + 1):
            low, high = sensor_range(s)
            pipeline = build_pipeline(SvmParams()).fit(rng.uniform(low, high, (train_rows, 1)))
            pipelines[(device, str(s))] = pipeline
            models[str(s)] = SensorModel.from_pipeline(pipeline, {"n_samples": train_rows})
        bundles[device] = ModelBundle(device, f"bench-{device}", models)
    return pipelines, bundles


def build_rows(devices: int, sensors: int, rows_per_model: int, seed: int) -> pd.DataFrame:
    """One window per 5 s for every model, sorted by device, sensor and time as SQL returns them."""
    rng = np.random.default_rng(seed + 1)
    n_models = devices * sensors
    model = np.repeat(np.arange(n_models), rows_per_model)
    sensor_number = model % sensors + 1
    ranges = np.array([sensor_range(s) for s in range(1, sensors + 1)])
    low, high = ranges[sensor_number - 1, 0], ranges[sensor_number - 1, 1]
    value = rng.uniform(low, high)
    planted = rng.random(len(value)) < 0.01
    value[planted] += rng.choice([-1, 1], planted.sum()) * rng.uniform(3, 6, planted.sum()) * (high - low)[planted]
    step = np.tile(np.arange(1, rows_per_model + 1), n_models)
    device_names = [f"dev{d:05d}" for d in range(devices)]
    return pd.DataFrame({
        "ts": START + pd.to_timedelta(step * 5, unit="s"),
        "device": pd.Categorical.from_codes(model // sensors, categories=device_names),
        "sensor": pd.Categorical.from_codes(model % sensors, categories=[str(s) for s in range(1, sensors + 1)]),
        "value": value,
    })


def best_of(repeat: int, fn):
    """Best wall time of ``repeat`` calls, and the last result."""
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def sklearn_loop(rows: pd.DataFrame, pipelines: dict) -> tuple[float, float, np.ndarray]:
    """Group once by device and sensor, then ``predict`` per model: (group s, predict s, labels)."""
    start = time.perf_counter()
    groups = rows.groupby(["device", "sensor"], observed=True, sort=False).indices
    values = rows["value"].to_numpy()
    grouped = time.perf_counter()
    labels = np.zeros(len(rows), dtype=np.int64)
    for key, index in groups.items():
        labels[index] = pipelines[key].predict(values[index].reshape(-1, 1))
    return grouped - start, time.perf_counter() - grouped, labels


def process_per_model(rows: pd.DataFrame, pipelines: dict, sample: int, workdir: Path) -> dict:
    """The reference's way on a sample of models, timed one process after another."""
    csv = workdir / "sensor_data.csv"
    rows.rename(columns={"ts": "TS", "device": "Device", "sensor": "Sensor", "value": "Value"}).to_csv(
        csv, index=False, date_format="%Y-%m-%d %H:%M:%S.%f")
    models_dir, preds_dir = workdir / "models", workdir / "preds"
    models_dir.mkdir()
    preds_dir.mkdir()
    keys = list(pipelines)
    picked = [keys[i] for i in np.linspace(0, len(keys) - 1, sample).astype(int)]
    times = []
    for device, sensor in picked:
        (models_dir / f"model_{device}_{sensor}").write_bytes(pickle.dumps(pipelines[(device, sensor)]))
        start = time.perf_counter()
        subprocess.run([sys.executable, str(ROOT / "bench" / "reference_step.py"), device, sensor,
                        str(models_dir), str(csv), str(preds_dir)], check=True)
        times.append(time.perf_counter() - start)
    per_model = float(np.mean(times))
    return {"sampled_models": len(picked), "seconds_per_model": [round(t, 3) for t in times],
            "input_csv_mb": round(csv.stat().st_size / 2**20, 1),
            "seconds": per_model * len(keys),
            "note": f"measured on {len(picked)} of {len(keys)} models, one process after another, "
                    "and extrapolated linearly to all models (mean seconds per model x models)"}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", type=int, default=2000)
    parser.add_argument("--sensors", type=int, default=5)
    parser.add_argument("--rows-per-model", type=int, default=720)
    parser.add_argument("--train-rows", type=int, default=250)
    parser.add_argument("--sample-processes", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args(argv)
    report = run(args)
    if args.out is not None:
        args.out.write_text(json.dumps(report, indent=1) + "\n")
    return report


def run(args: argparse.Namespace) -> dict:
    """Build the fleet, time every way of scoring it, and return the report."""

    setup = time.perf_counter()
    pipelines, bundles = build_fleet(args.devices, args.sensors, args.train_rows, args.seed)
    rows = build_rows(args.devices, args.sensors, args.rows_per_model, args.seed)
    n_rows, n_models = len(rows), len(pipelines)
    report = {"devices": args.devices, "sensors": args.sensors, "models": n_models, "rows": n_rows,
              "rows_per_model": args.rows_per_model, "setup_seconds": None}

    with tempfile.TemporaryDirectory(prefix="bscore-bench-") as tmp:
        workdir = Path(tmp)
        source, target = workdir / "windows.parquet", workdir / "predictions.parquet"
        rows.to_parquet(source, index=False)
        report["setup_seconds"] = round(time.perf_counter() - setup, 1)
        compiled = BundleModels(bundles)
        compile_s, _ = best_of(args.repeat, lambda: BundleModels(bundles))
        engine_s, result = best_of(args.repeat, lambda: score_shard(rows, bundles))
        scoring_only_s, _ = best_of(args.repeat, lambda: score_shard(rows, compiled))
        predictions = result.predictions
        assert len(predictions) == n_rows and result.missing_models.empty

        def io_floor():
            frame = pd.read_parquet(source)
            frame.assign(score=predictions["score"].to_numpy(), is_anomaly=predictions["is_anomaly"].to_numpy(),
                         model_version=predictions["model_version"].array).to_parquet(target, index=False)

        def engine_with_io():
            score_shard(pd.read_parquet(source), bundles).predictions.to_parquet(target, index=False)

        floor_s, _ = best_of(args.repeat, io_floor)
        engine_io_s, _ = best_of(args.repeat, engine_with_io)
        group_s, predict_s, labels = sklearn_loop(rows, pipelines)
        loop_s = group_s + predict_s
        reference = process_per_model(rows, pipelines, args.sample_processes, workdir)

    score = predictions["score"].to_numpy()
    decided = np.abs(score) > 1e-9
    sample_keys = list(pipelines)[:: max(1, n_models // 200)]
    index = rows.groupby(["device", "sensor"], observed=True).indices
    worst = max(float(np.max(np.abs(pipelines[k].decision_function(rows["value"].to_numpy()[index[k]].reshape(-1, 1))
                                    - score[index[k]]))) for k in sample_keys)

    reference_s = reference.pop("seconds")

    def rate(seconds):
        return {"seconds": round(seconds, 4), "rows_per_second": round(n_rows / seconds)}

    report.update({
        "engine": {**rate(engine_s), "includes": "score_shard(rows, bundles): compiling the bundles, "
                   "mapping rows to models, scoring, assembling the predictions frame",
                   "compile_seconds": round(compile_s, 4), "scoring_precompiled_seconds": round(scoring_only_s, 4),
                   "threads": engine.THREADS, "block_rows": engine.BLOCK_ROWS},
        "sklearn_grouped_predict_loop": {**rate(loop_s), "group_seconds": round(group_s, 4),
                                         "predict_seconds": round(predict_s, 4)},
        "process_per_model_extrapolated": {**rate(reference_s), **reference},
        "io_floor_parquet": rate(floor_s),
        "engine_plus_io_parquet": rate(engine_io_s),
        "ratios": {
            "sklearn_loop_over_engine": round(loop_s / engine_s, 1),
            "process_per_model_over_engine": round(reference_s / engine_s, 1),
            "engine_plus_io_over_io_floor": round(engine_io_s / floor_s, 3),
        },
        "parity": {"label_mismatches_where_abs_decision_gt_1e-9": int(((labels == -1) != predictions["is_anomaly"]
                                                                        .to_numpy())[decided].sum()),
                   "max_abs_decision_diff_sampled_models": worst, "sampled_models": len(sample_keys)},
        "environment": {
            "python": platform.python_version(), "numpy": np.__version__, "pandas": pd.__version__,
            "scikit-learn": sklearn.__version__, "cpu_count": os.cpu_count(), "processor": _processor(),
            "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
            "OPENBLAS_L2_SIZE": os.environ.get("OPENBLAS_L2_SIZE"),
            "threadpoolctl": threadpoolctl.threadpool_info(),
        },
    })
    return report


def _processor() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    print(json.dumps(main(), indent=1))
