"""Which multivariate device model: PCA with SPE and T² (bscore's), PCA with SPE only, and
scikit-learn's IsolationForest, on the same device windows; prints JSON.

Usage::

    BSCORE_SKAB_DIR=/work/data/SKAB BSCORE_SMD_DIR=/work/data/SMD \\
        .venv/bin/python bench/device_model_choice.py [--datasets sim,skab,smd --repeat 3 --out FILE]

Each device's training windows (the data set's training split, ``bench/datasets.py``, windows with
every sensor present) fit each variant; every variant's threshold is ``base.tail_threshold`` of
its own training scores at the device false-alarm budget (``BSCORE_FALSE_ALARM_RATE``'s default;
PCA SPE + T² splits it in half per statistic, as ``scoring.detectors.multivariate`` does). The
test windows are judged (a missing sensor taken at its training median) and pooled over the
devices: point-wise precision, recall, F1 and false-alarm rate against the labels, beside flagging
everything; and the fit time per device, best of ``--repeat``, the variants alternating.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.datasets import DEFAULT_SMD_MACHINES, LOADERS, point_labels  # noqa: E402
from bench.quality import pointwise  # noqa: E402
from scoring.detectors import FitOptions  # noqa: E402
from scoring.detectors.base import tail_threshold  # noqa: E402
from scoring.detectors.multivariate import device_matrix, fit_device  # noqa: E402


class PcaSpeT2:
    name = "pca_spe_t2"

    def fit(self, x, sensors, budget):
        self.model = fit_device(x, sensors, FitOptions(false_alarm_rate=budget))
        self.columns = [sensors.index(s) for s in self.model.sensors]  # constant sensors dropped
        return self

    def flags(self, x):
        return self.model.score(x[:, self.columns])[1]


class PcaSpe(PcaSpeT2):
    name = "pca_spe"

    def fit(self, x, sensors, budget):
        super().fit(x, sensors, budget)
        spe = self.model.statistics(x[:, self.columns])[0]
        self.threshold = tail_threshold(spe, budget)
        return self

    def flags(self, x):
        return self.model.statistics(x[:, self.columns])[0] > self.threshold


class Forest:
    name = "isolation_forest"

    def fit(self, x, sensors, budget):
        from sklearn.ensemble import IsolationForest

        self.median = np.median(x, axis=0)
        self.forest = IsolationForest(n_estimators=100, random_state=0).fit(x)
        self.threshold = tail_threshold(-self.forest.score_samples(x), budget)
        return self

    def flags(self, x):
        x = np.where(np.isnan(x), self.median, x)
        return -self.forest.score_samples(x) > self.threshold


VARIANTS = (PcaSpeT2, PcaSpe, Forest)


def device_data(data):
    """Per device: sensors, complete training matrix, test times and matrix."""
    out = {}
    for device, train in data.train.groupby("device", observed=True):
        sensors = sorted(train["sensor"].astype(str).unique())
        train = train.assign(sensor=train["sensor"].astype(str))
        _, x = device_matrix(train, sensors)
        x = x[np.isfinite(x).all(axis=1)]
        test = data.test[data.test["device"] == device]
        ts, y = device_matrix(test.assign(sensor=test["sensor"].astype(str)), sensors)
        out[str(device)] = (sensors, x, ts, y)
    return out


def run(data, repeat: int, budget: float) -> dict:
    devices = device_data(data)
    fit_seconds = {variant.name: [] for variant in VARIANTS}
    flagged = {variant.name: [] for variant in VARIANTS}
    frames = []
    for device, (sensors, x, ts, y) in devices.items():
        frames.append(pd.DataFrame({"device": device, "ts": ts}))
        for round_ in range(repeat):
            for variant in VARIANTS if round_ % 2 == 0 else VARIANTS[::-1]:  # alternate the order
                started = time.perf_counter()
                try:
                    model = variant().fit(x, sensors, budget)
                except ValueError as exc:  # no sensor moved in training: nothing to judge with
                    model = exc
                elapsed = time.perf_counter() - started
                fit_seconds[variant.name].append((device, round_, elapsed))
                if round_ == 0:
                    if isinstance(model, Exception):
                        flagged[variant.name].append(np.zeros(len(y), dtype=bool))
                    else:
                        flagged[variant.name].append(model.flags(y))
    windows = pd.concat(frames, ignore_index=True)
    truth = point_labels(windows, data.labels)
    prevalence = float(truth.mean())
    report = {"devices": len(devices), "test_windows": int(len(windows)), "budget": budget,
              "flag_everything_f1": round(2 * prevalence / (1 + prevalence), 4) if prevalence else 0.0, "variants": {}}
    for variant in VARIANTS:
        times = pd.DataFrame(fit_seconds[variant.name], columns=["device", "round", "seconds"])
        best = times.groupby("device")["seconds"].min()
        report["variants"][variant.name] = {
            **pointwise(truth, np.concatenate(flagged[variant.name])),
            "fit_ms_per_device_best_of_repeat": round(float(best.mean() * 1000), 2),
        }
    return report


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default="sim,skab,smd")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--false-alarm-rate", type=float, default=FitOptions().false_alarm_rate)
    parser.add_argument("--smd-machines", default=",".join(DEFAULT_SMD_MACHINES))
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    report = {"python": platform.python_version(), "repeat": args.repeat, "datasets": {}}
    for name in [n for n in args.datasets.split(",") if n]:
        data = LOADERS[name](machines=tuple(args.smd_machines.split(","))) if name == "smd" else LOADERS[name]()
        report["datasets"][name] = run(data, args.repeat, args.false_alarm_rate)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    for name, entry in report["datasets"].items():
        for variant, figures in entry["variants"].items():
            print(f"{name:<5} {variant:<17} F1 {figures['f1']:.3f} FAR {figures['false_alarm_rate']:.4f} "
                  f"P {figures['precision']:.3f} R {figures['recall']:.3f} fit {figures['fit_ms_per_device_best_of_repeat']:.1f} "
                  f"ms/device (flag-all F1 {entry['flag_everything_f1']:.3f})", file=sys.stderr)
    return report


if __name__ == "__main__":
    main()
