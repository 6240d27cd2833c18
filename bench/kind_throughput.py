"""Scoring throughput of each detector kind against the reference's, on one realistic fleet.

Usage::

    .venv/bin/python bench/kind_throughput.py [--devices 400 --sensors 5 --hours 2 --repeat 5]

One simulated fleet (``bench.datasets.load_sim``: constant, quantized, seasonal, drifting and
regime-switching sensors); each kind trained on its training hours, then the engine
(``score_shard``, scoring alone, rows as the store hands them) scores the same test rows,
kinds alternating within each repeat so that a busy machine slows them alike. Prints the best
windows per second of each kind and its ratio to the reference kind (the OneClassSVM's own
boundary, today's engine). The issue-17 bar: the default kind at least 1.0.

The rows carry their windows' extremes (``low``, ``high``), as the store hands them; the robust
kind's compiled pass alone (``CompiledModels.decision`` on one thread, no frame work around it)
is also timed on the same rows with and without them, alternating, in CPU seconds of this
process (a loaded machine stretches wall time far more than it does those), so its cost shows
apart from the engine's.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.datasets import load_sim  # noqa: E402
from bench.quality import _sorted_for_scoring, train_kind  # noqa: E402
from scoring.engine import BundleModels, Runs, score_shard, window_extremes_of  # noqa: E402

KINDS = ("reference", "svm", "robust")
MEANS_ONLY = "robust, means only"  # the robust models on the same windows less their extremes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=400, help="simulated devices")
    parser.add_argument("--sensors", type=int, default=5, help="sensors per device")
    parser.add_argument("--hours", type=float, default=2.0, help="hours scored (and trained on)")
    parser.add_argument("--repeat", type=int, default=5, help="rounds; the best of each kind counts")
    args = parser.parse_args()

    data = load_sim(devices=args.devices, sensors=args.sensors, train_hours=args.hours, test_hours=args.hours)
    devices = sorted(data.test["device"].unique())
    rows = _sorted_for_scoring(data.test)
    bundles = {kind: train_kind(kind, data.train, devices, None)[0] for kind in KINDS}
    variants = {**{kind: (rows, bundles[kind]) for kind in KINDS},
                MEANS_ONLY: (rows.drop(columns=["low", "high"]), bundles["robust"])}
    for frame, kind_bundles in variants.values():  # the first call pays imports and compiled code's loading
        score_shard(frame.head(10_000), kind_bundles)
    best = dict.fromkeys(variants, float("inf"))
    for _ in range(args.repeat):
        for name, (frame, kind_bundles) in variants.items():
            started = time.perf_counter()
            score_shard(frame, kind_bundles)
            best[name] = min(best[name], time.perf_counter() - started)
    print(f"{len(rows):,} windows ({args.devices} devices x {args.sensors} sensors x {args.hours:g} h), "
          f"best of {args.repeat}")
    for kind in variants:
        print(f"{kind:>18}  {len(rows) / best[kind] / 1e6:6.2f} M windows/s  "
              f"{best['reference'] / best[kind]:5.2f} x reference")
    kernel = robust_kernel_alone(rows, bundles["robust"], args.repeat)
    for name, seconds in kernel.items():
        print(f"robust compiled pass, {name:>16}: {len(rows) / seconds / 1e6:6.2f} M windows per CPU second")


def robust_kernel_alone(rows, bundles, repeat: int) -> dict[str, float]:
    """Best CPU seconds of the robust models' compiled pass over ``rows`` (one thread) with and
    without extremes."""
    compiled = BundleModels(bundles)
    device_codes, sensor_codes = rows["device"].cat.codes.to_numpy(), rows["sensor"].cat.codes.to_numpy()
    runs, first = Runs.of(device_codes, sensor_codes)
    runs = runs.with_model(compiled.model_of(rows["device"].cat.categories, rows["sensor"].cat.categories)[
        device_codes[first], sensor_codes[first]])
    values = rows["value"].to_numpy(dtype="float64")
    low, high = window_extremes_of(rows)
    variants = {"with extremes": (low, high), "without extremes": (None, None)}
    best = dict.fromkeys(variants, float("inf"))
    for _ in range(repeat):
        for name, (lows, highs) in variants.items():
            started = time.process_time()
            compiled.compiled.decision(values, runs, threads=1, low=lows, high=highs)
            best[name] = min(best[name], time.process_time() - started)
    return best


if __name__ == "__main__":
    main()
