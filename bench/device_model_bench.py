"""Speed of the multivariate device model: fitting it per device, and the device verdict it gives
against the vote over sensors, on one synthetic fleet hour; prints JSON.

Usage::

    .venv/bin/python bench/device_model_bench.py [--devices 400 --sensors 5 --windows 720 --repeat 3]

Fitting: ``scoring.training.fit_device_model`` (the device's windows as the store gives them,
pivoted, then ``multivariate.fit_device``) and ``fit_device`` alone on the matrix, per device,
best of ``--repeat``. Verdicts: ``scoring.verdicts.device_verdicts`` (the vote) and
``multivariate_verdicts`` over the hour's predictions (Arrow, ids dictionary-encoded as the asset
reads them), alternating, wall and CPU seconds, best of ``--repeat``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scoring.detectors.multivariate import fit_device  # noqa: E402
from scoring.training import fit_device_model  # noqa: E402
from scoring.verdicts import device_verdicts, multivariate_verdicts  # noqa: E402


def device_values(rng, sensors: int, windows: int) -> np.ndarray:
    """A device's windows: sensors driven by two shared factors, with noise, at their own levels."""
    factors = rng.normal(size=(windows, 2))
    mixing = rng.normal(size=(sensors, 2))
    return factors @ mixing.T + 0.2 * rng.normal(size=(windows, sensors)) + rng.uniform(10, 100, sensors)


def timed(function, *args) -> tuple[object, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    result = function(*args)
    return result, time.perf_counter() - wall, time.process_time() - cpu


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=400)
    parser.add_argument("--sensors", type=int, default=5)
    parser.add_argument("--windows", type=int, default=720)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--anomaly-rate", type=float, default=0.01)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    sensors = [str(s + 1) for s in range(args.sensors)]
    ts = pd.date_range("2026-01-01 00:00:05", periods=args.windows, freq="5s")
    training = [device_values(rng, args.sensors, args.windows) for _ in range(args.devices)]
    fit_device(training[0], sensors)  # imports scikit-learn outside the timing

    matrix_fit, pivot_fit, models = [], [], {}
    for round_ in range(args.repeat):
        for d, x in enumerate(training):
            long = pd.DataFrame({"ts": np.tile(ts, args.sensors), "sensor": np.repeat(sensors, args.windows),
                                 "value": x.T.ravel()})
            models[f"d{d}"], seconds, _ = timed(fit_device, x, sensors)
            matrix_fit.append((d, round_, seconds))
            _, seconds, _ = timed(fit_device_model, long, sensors)
            pivot_fit.append((d, round_, seconds))

    hour = [device_values(rng, args.sensors, args.windows) for _ in range(args.devices)]
    rows = args.devices * args.sensors * args.windows
    predictions = pa.table({  # in the parts' order: device, sensor, ts
        "ts": pa.array(np.tile(ts.to_numpy(), args.devices * args.sensors)),
        "device": pa.array(np.repeat([f"d{d}" for d in range(args.devices)], args.sensors * args.windows)
                           ).dictionary_encode(),
        "sensor": pa.array(np.tile(np.repeat(sensors, args.windows), args.devices)).dictionary_encode(),
        "is_anomaly": pa.array(rng.random(rows) < args.anomaly_rate),
        "value": pa.array(np.concatenate([x.T.ravel() for x in hour])),
    })
    verdict_times = {"vote": [], "multivariate": []}
    for round_ in range(args.repeat):
        order = ("vote", "multivariate") if round_ % 2 == 0 else ("multivariate", "vote")
        for method in order:
            if method == "vote":
                result, wall, cpu = timed(device_verdicts, predictions)
            else:
                result, wall, cpu = timed(multivariate_verdicts, predictions, models)
            verdict_times[method].append((wall, cpu))
            assert len(result) == args.devices * args.windows

    def best_ms(times):
        return round(float(pd.DataFrame(times, columns=["d", "r", "s"]).groupby("d")["s"].min().mean() * 1000), 3)

    report = {
        "devices": args.devices, "sensors": args.sensors, "windows": args.windows, "repeat": args.repeat,
        "predictions": rows,
        "fit_ms_per_device": {"fit_device_on_matrix": best_ms(matrix_fit), "fit_device_model_from_rows": best_ms(pivot_fit)},
        "verdicts": {method: {"wall_seconds": round(min(w for w, _ in times), 3),
                              "cpu_seconds": round(min(c for _, c in times), 3),
                              "predictions_per_second": round(rows / min(w for w, _ in times))}
                     for method, times in verdict_times.items()},
    }
    report["verdicts"]["multivariate_over_vote_wall"] = round(
        report["verdicts"]["multivariate"]["wall_seconds"] / report["verdicts"]["vote"]["wall_seconds"], 2)
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
