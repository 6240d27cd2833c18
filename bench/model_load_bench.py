"""Benchmark of loading every device's current model bundle from a folder blob store; prints JSON.

Usage::

    .venv/bin/python bench/model_load_bench.py [--devices 2000 --sensors 5 --repeat 3 --root DIR]

Writes ``--devices`` bundles of ``--sensors`` one-class SVMs each (a few support vectors,
as the reference's ``nu=0.0001`` gives) into a folder store, then times
``scoring.model_store.load_current_bundles_or_refusals`` over all devices (best of
``--repeat``), as a scoring run does before it plans its shards.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from resources.blob import LocalBlobStore  # noqa: E402
from scoring.model_format import ModelBundle, SensorModel  # noqa: E402
from scoring.model_store import load_current_bundles_or_refusals, save_bundle  # noqa: E402


def write_fleet(blobs, devices: int, sensors: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    names = [f"dev{d:05d}" for d in range(devices)]
    for device in names:
        models = {
            str(s): SensorModel(mean=rng.uniform(10, 100, 1), scale=rng.uniform(1, 3, 1),
                                support_vectors=rng.normal(size=(3, 1)), dual_coef=np.full(3, 1 / 3),
                                intercept=-0.5, metadata={"n_samples": 720})
            for s in range(1, sensors + 1)
        }
        save_bundle(blobs, ModelBundle(device, "v1", models))
    return names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", type=int, default=2000)
    parser.add_argument("--sensors", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--root", type=Path, default=None, help="reuse (or create) the store here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.root or Path(tmp)
        blobs = LocalBlobStore(root=str(root))
        started = time.perf_counter()
        if blobs.list("models/"):
            devices = sorted({key.split("/")[1] for key in blobs.list("models/")})
        else:
            devices = write_fleet(blobs, args.devices, args.sensors)
        setup = time.perf_counter() - started
        times = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            bundles, refused = load_current_bundles_or_refusals(blobs, devices)
            times.append(time.perf_counter() - started)
        print(json.dumps({"devices": len(devices), "sensors": args.sensors, "bundles": len(bundles),
                          "refused": len(refused), "setup_seconds": round(setup, 2),
                          "load_seconds_best": round(min(times), 3), "load_seconds_all": [round(t, 3) for t in times]},
                         indent=1))


if __name__ == "__main__":
    main()
