"""Detection quality of a detector kind on public labelled data sets of real machines; prints JSON.

Usage::

    BSCORE_SKAB_DIR=/work/data/skab BSCORE_SMD_DIR=/work/data/smd \\
        .venv/bin/python bench/quality.py --datasets skab,smd --kinds reference,svm,robust --out FILE

For each data set (``bench/datasets.py`` says how to get the files) and each kind, it trains one
bundle per device on the training split with ``scoring.training.train_fleet`` and scores the
test split with ``scoring.engine.score_shard``, both timed (windows per second). A device's
verdict for a window is reached both ways ``bscore`` offers (``BSCORE_DEVICE_VERDICT``): ``vote``,
"any of its sensors flagged" (``scoring.verdicts.device_verdicts``, the default
``min_sensors=1``), and ``multivariate``, the device model trained beside the sensors' models
(``scoring.verdicts.multivariate_verdicts``; the vote for a device without one). The top-level
figures are the vote's; ``device_verdicts`` holds both. Figures: the share of windows flagged, point-wise precision, recall, F1
and false-alarm rate of device verdicts against the labels beside flagging everything and the
data set's published best, the point-adjusted F1 (labelled so: it inflates), and per sensor its
flag rate on its own training windows and on the clean test windows, with the training
sensors that are constant, near-constant, quantized or of zero MAD (what breaks detectors). The JSON report
goes to stdout and ``--out``; a table to stderr.

Kinds: every trainable kind (``robust``, the default; ``svm``, the reference's StandardScaler +
OneClassSVM with its threshold calibrated to the budget) and ``reference``, that SVM at libsvm's
own boundary (how bscore trained before thresholds were calibrated).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.datasets import (DEFAULT_SMD_MACHINES, LOADERS, PUBLISHED_BESTS, LabelledDataset,  # noqa: E402
                            load_sim, point_labels)
from scoring import training  # noqa: E402
from scoring.detectors import FitOptions  # noqa: E402
from scoring.model_format import ModelBundle  # noqa: E402
from scoring.engine import score_shard  # noqa: E402
from scoring.verdicts import device_verdicts, multivariate_verdicts  # noqa: E402

NEAR_CONSTANT_MODE_SHARE = 0.95  # one value covers at least this share of training windows
QUANTIZED_MAX_DISTINCT = 20  # at most this many distinct training values
# Also reported: a median absolute deviation of 0 (half the windows or more on one value, the rest
# spread out, as SMD's mostly-zero counters): a median/MAD scale is then 0.


# ------------------------------------------------------------------------- kinds, train, score


def train_kind(kind: str, windows: pd.DataFrame, devices: list[str], false_alarm_rate: float | None):
    """``train_fleet`` of ``kind`` (a trainable kind, or ``reference``: the SVM at libsvm's own
    boundary, as bscore trained it before thresholds were calibrated); returns (bundles, refused)."""
    options = FitOptions() if false_alarm_rate is None else FitOptions(false_alarm_rate=false_alarm_rate)
    if kind != "reference":
        return training.train_fleet(windows, devices, options, kind=kind)
    bundles, refused = training.train_fleet(windows, devices, options, kind="svm")
    return {device: ModelBundle(device, bundle.version, {s: replace(m, threshold=0.0) for s, m in bundle.models.items()})
            for device, bundle in bundles.items()}, refused


def _sorted_for_scoring(windows: pd.DataFrame) -> pd.DataFrame:
    """Rows as the store hands them to the scorer: categorical ids, sorted by device, sensor, ts."""
    rows = windows.assign(device=windows["device"].astype("category"), sensor=windows["sensor"].astype("category"))
    return rows.sort_values(["device", "sensor", "ts"], kind="stable").reset_index(drop=True)


def _timed(function, *args):
    started = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - started


# ------------------------------------------------------------------ metrics (to be replaced)
# Minimal point-wise figures until scoring/evaluation.py (branch `evaluation`) reaches main;
# then call it instead so the benchmark and `bscore evaluate` count the same way.


def pointwise(truth: np.ndarray, flagged: np.ndarray) -> dict:
    """Point-wise confusion counts, precision, recall, F1 and false-alarm rate."""
    truth, flagged = np.asarray(truth, bool), np.asarray(flagged, bool)
    tp = int(np.count_nonzero(truth & flagged))
    fp = int(np.count_nonzero(~truth & flagged))
    fn = int(np.count_nonzero(truth & ~flagged))
    tn = int(np.count_nonzero(~truth & ~flagged))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"tp": tp, "fp": fp, "fn": fn, "tn": tn, "precision": round(precision, 4), "recall": round(recall, 4),
            "f1": round(f1, 4), "false_alarm_rate": round(fp / (fp + tn), 4) if fp + tn else 0.0}


def point_adjusted(truth: np.ndarray, flagged: np.ndarray, device: np.ndarray) -> np.ndarray:
    """Flags with every labelled run that has one flag filled in (the point-adjust protocol).

    ``truth``, ``flagged`` and ``device`` are in device, time order."""
    truth, adjusted = np.asarray(truth, bool), np.asarray(flagged, bool).copy()
    run_start = truth & ~np.concatenate([[False], truth[:-1] & (device[1:] == device[:-1])])
    run_id = np.cumsum(run_start) * truth
    hit = np.zeros(run_id.max() + 1, dtype=bool)
    hit[run_id[adjusted & truth]] = True
    adjusted |= truth & hit[run_id]
    return adjusted


# ----------------------------------------------------------------------- sensors in training


def training_sensor_shapes(train: pd.DataFrame) -> list[dict]:
    """Every training sensor that is constant, near-constant, quantized or has a zero MAD, with its figures."""
    found = []
    for (device, sensor), values in train.groupby(["device", "sensor"], sort=True, observed=True)["value"]:
        counts = values.round(12).value_counts()
        distinct, mode_share = len(counts), float(counts.iloc[0] / len(values))
        mad = float((values - values.median()).abs().median())
        if distinct == 1:
            shape = "constant"
        elif mode_share >= NEAR_CONSTANT_MODE_SHARE:
            shape = "near_constant"
        elif distinct <= QUANTIZED_MAX_DISTINCT:
            shape = "quantized"
        elif mad == 0:
            shape = "zero_mad"
        else:
            continue
        found.append({"device": str(device), "sensor": str(sensor), "shape": shape, "distinct_values": distinct,
                      "mode_share": round(mode_share, 4), "mad": mad, "std": float(values.std(ddof=0))})
    return found


# ---------------------------------------------------------------------------------- one run


def evaluate_kind(data: LabelledDataset, kind: str, false_alarm_rate: float | None) -> dict:
    """Train ``kind`` per device, score the test split (and the training split), measure."""
    devices = sorted(data.test["device"].unique())
    (bundles, refused), train_seconds = _timed(train_kind, kind, data.train, devices, false_alarm_rate)
    test_rows = _sorted_for_scoring(data.test)
    scores, score_seconds = _timed(score_shard, test_rows, bundles)
    train_scores = score_shard(_sorted_for_scoring(data.train), bundles).predictions

    predictions = scores.predictions
    sensor_truth = point_labels(predictions, data.labels)
    verdicts = (predictions.assign(is_anomaly=predictions["is_anomaly"].astype(bool))
                .groupby(["device", "ts"], sort=True, observed=True)["is_anomaly"].any().reset_index())
    truth = point_labels(verdicts, data.labels)
    flagged = verdicts["is_anomaly"].to_numpy()
    prevalence = float(truth.mean())
    adjusted = point_adjusted(truth, flagged, verdicts["device"].astype(str).to_numpy())

    per_sensor = _per_sensor_rates(train_scores, predictions[~sensor_truth])
    methods = _device_verdict_figures(predictions, bundles, data.labels, flagged)
    return {
        "kind": kind,
        "false_alarm_rate_setting": false_alarm_rate,
        "models": int(sum(len(b.models) for b in bundles.values())),
        "refused_sensors": {d: r for d, r in refused.items()},
        "refused_while_scoring": scores.refused.to_dict("records"),
        "missing_model_rows": int(scores.missing_models["rows"].sum()) if len(scores.missing_models) else 0,
        "train": {"seconds": round(train_seconds, 3), "windows": int(len(data.train)),
                  "windows_per_second": round(len(data.train) / train_seconds, 1)},
        "score": {"seconds": round(score_seconds, 3), "windows": int(len(test_rows)),
                  "windows_per_second": round(len(test_rows) / score_seconds, 1)},
        "sensor_windows_flagged_share": round(float(predictions["is_anomaly"].mean()), 4),
        "sensor_clean_windows_flagged_share": round(float(predictions["is_anomaly"][~sensor_truth].mean()), 4),
        "sensor_training_windows_flagged_share": round(float(train_scores["is_anomaly"].mean()), 4),
        "device_windows_flagged_share": round(float(flagged.mean()), 4),
        "devices_flagging_every_test_window": int(verdicts.groupby("device", observed=True)["is_anomaly"].all().sum()),
        "pointwise": pointwise(truth, flagged),
        "point_adjusted": pointwise(truth, adjusted),
        "flag_everything": {"f1": round(2 * prevalence / (1 + prevalence), 4) if prevalence else 0.0,
                            "false_alarm_rate": 1.0},
        "device_verdicts": methods,
        "per_device": _per_device(verdicts["device"].astype(str).to_numpy(), truth, flagged),
        "per_sensor": per_sensor,
        **(_simulated_figures(data, bundles, predictions) if data.name == "sim" else {}),
    }


def _device_verdict_figures(predictions: pd.DataFrame, bundles: dict, labels: pd.DataFrame,
                            any_flagged: np.ndarray) -> dict:
    """Point-wise and point-adjusted figures of both device verdicts, timed (the vote is checked
    against "any sensor flagged", which the top-level figures use)."""
    rows = predictions.astype({"device": str, "sensor": str})
    figures = {}
    for method in ("vote", "multivariate"):
        if method == "vote":
            verdicts, seconds = _timed(device_verdicts, rows)
        else:
            models = {device: bundle.device_model for device, bundle in bundles.items()}
            verdicts, seconds = _timed(multivariate_verdicts, rows, models)
        verdicts = verdicts.to_pandas()
        truth = point_labels(verdicts, labels)
        flagged = verdicts["is_anomaly"].to_numpy()
        if method == "vote" and not (flagged == any_flagged).all():
            raise AssertionError("the vote differs from 'any sensor flagged'")
        figures[method] = {
            "seconds": round(seconds, 3),
            "device_windows_judged_by_device_model": int((verdicts["method"] == "multivariate").sum()),
            "device_windows_flagged_share": round(float(flagged.mean()), 4),
            "pointwise": pointwise(truth, flagged),
            "point_adjusted": pointwise(truth, point_adjusted(truth, flagged, verdicts["device"].to_numpy())),
        }
    return figures


def _simulated_figures(data: LabelledDataset, bundles: dict, predictions: pd.DataFrame) -> dict:
    """On the simulated fleet: each planted anomaly kind's recall (events: at least one window of
    the anomaly's own sensor flagged; windows: the share of its windows flagged), and every
    sensor's flag rate on the same hours without anomalies (the simulator plants them on top of
    an otherwise identical fleet), by behaviour."""
    flagged = predictions[predictions["is_anomaly"].astype(bool)].astype({"device": str, "sensor": str})
    scored = predictions.astype({"device": str, "sensor": str})
    events = []
    for label in data.sensor_labels.itertuples():
        def inside(frame):
            return frame[(frame["device"] == label.device) & (frame["sensor"] == label.sensor)
                         & (frame["ts"] > label.start) & (frame["ts"] <= label.end)]
        windows, hits = len(inside(scored)), len(inside(flagged))
        events.append((label.kind, hits > 0, hits, windows))
    events = pd.DataFrame(events, columns=["kind", "found", "hits", "windows"])
    recall = {kind: {"events": int(len(group)), "event_recall": round(float(group["found"].mean()), 3),
                     "window_recall": round(float(group["hits"].sum() / max(group["windows"].sum(), 1)), 3)}
              for kind, group in events.groupby("kind")}
    clean = load_sim(anomaly_rate=0.0)
    rates = (score_shard(_sorted_for_scoring(clean.test), bundles).predictions.astype({"device": str, "sensor": str})
             .groupby(["device", "sensor"])["is_anomaly"].mean().rename("rate").reset_index()
             .merge(data.profiles[["device", "sensor", "behaviour"]], on=["device", "sensor"]))
    return {"recall_by_anomaly_kind": recall,
            "clean_hours": {"max_sensor_flag_rate": round(float(rates["rate"].max()), 4),
                            "sensors_over_twice_the_budget": int((rates["rate"] > 2 * 0.005).sum()),
                            "sensors": int(len(rates)),
                            "by_behaviour": {b: {"mean": round(float(g["rate"].mean()), 4),
                                                 "max": round(float(g["rate"].max()), 4)}
                                             for b, g in rates.groupby("behaviour")}}}


def _per_device(device: np.ndarray, truth: np.ndarray, flagged: np.ndarray) -> dict:
    """Each device's flagged share and point-wise figures."""
    return {str(name): {"flagged_share": round(float(flagged[device == name].mean()), 4),
                        **pointwise(truth[device == name], flagged[device == name])}
            for name in np.unique(device)}


def _per_sensor_rates(train_scores: pd.DataFrame, clean_test: pd.DataFrame) -> list[dict]:
    """Each model's flag rate on its own training windows and on the clean test windows."""
    def rate(frame):
        return frame.assign(flag=frame["is_anomaly"].astype(float)).groupby(
            ["device", "sensor"], observed=True)["flag"].mean()
    rates = pd.DataFrame({"train_flag_rate": rate(train_scores), "clean_test_flag_rate": rate(clean_test)})
    rates = rates.round(4).reset_index().sort_values(["device", "sensor"])
    return [{"device": str(r.device), "sensor": str(r.sensor), "train_flag_rate": float(r.train_flag_rate),
             "clean_test_flag_rate": float(r.clean_test_flag_rate)} for r in rates.itertuples()]


def _load(name: str, args) -> LabelledDataset:
    if name == "skab":
        return LOADERS["skab"](args.skab_dir, groups=tuple(args.skab_groups.split(",")), train_on=args.skab_train_on)
    if name == "smd":
        return LOADERS["smd"](args.smd_dir, machines=tuple(args.smd_machines.split(",")))
    if name == "sim":
        return LOADERS["sim"]()
    raise ValueError(f"--datasets: unknown data set {name!r} (known: {', '.join(LOADERS)})")


def _published_best_line(best: dict | None) -> str:
    """The data set's published best in one line (the full entry is in the JSON)."""
    if not best:
        return ""
    if "outlier_detection" in best:
        method, figures = max(best["outlier_detection"].items(), key=lambda item: (item[1]["f1"], -item[1]["far_pct"]))
        return f"{method} point-wise F1 {figures['f1']:.2f} @ FAR {figures['far_pct']:.2f} %"
    if "omnianomaly_point_adjusted_f1" in best:
        return f"OmniAnomaly point-adjusted F1 {best['omnianomaly_point_adjusted_f1']:.2f} (compare with F1 PA*)"
    return ""


def _table(report: dict) -> str:
    lines = [f"{'data set':<8} {'kind/verdict':<14} {'flagged':>8} {'FAR':>7} {'P':>6} {'R':>6} {'F1':>6} "
             f"{'F1 all':>7} {'F1 PA*':>7} {'train w/s':>10} {'score w/s':>10}"]
    for name, entry in report["datasets"].items():
        for run in entry["kinds"].values():
            if "error" in run:
                lines.append(f"{name:<8} {run['kind']:<10} error: {run['error']}")
                continue
            for method, figures in run["device_verdicts"].items():
                p = figures["pointwise"]
                label = f"{run['kind']}/{'vote' if method == 'vote' else 'mv'}"
                lines.append(f"{name:<8} {label:<14} {figures['device_windows_flagged_share']:>8.4f} "
                             f"{p['false_alarm_rate']:>7.4f} {p['precision']:>6.3f} {p['recall']:>6.3f} "
                             f"{p['f1']:>6.3f} {run['flag_everything']['f1']:>7.3f} "
                             f"{figures['point_adjusted']['f1']:>7.3f} {run['train']['windows_per_second']:>10.0f} "
                             f"{run['score']['windows_per_second']:>10.0f}")
        best = _published_best_line(entry.get("published_best"))
        if best:
            lines.append(f"{name:<8} published best: {best}")
    lines.append("kind/vote: any sensor flagged; kind/mv: the multivariate device model (the vote where a device has "
                 "none). flagged: share of device windows flagged; FAR, P, R, F1: point-wise over device windows; "
                 "F1 all: flagging everything; F1 PA*: point-adjusted (inflated, for published figures); train w/s "
                 "includes fitting the device models")
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default="sim,skab,smd", help="comma-separated: sim, skab, smd")
    parser.add_argument("--kinds", default="reference,svm,robust", help="comma-separated detector kinds")
    parser.add_argument("--false-alarm-rate", type=float, default=None,
                        help="the budget passed to kinds that calibrate (not the reference kind)")
    parser.add_argument("--skab-dir", default=None, help="default $BSCORE_SKAB_DIR")
    parser.add_argument("--skab-groups", default="valve1,valve2,other")
    parser.add_argument("--skab-train-on", default="first_rows", choices=("first_rows", "anomaly_free"))
    parser.add_argument("--smd-dir", default=None, help="default $BSCORE_SMD_DIR")
    parser.add_argument("--smd-machines", default=",".join(DEFAULT_SMD_MACHINES))
    parser.add_argument("--out", default=None, help="also write the JSON report here")
    args = parser.parse_args(argv)

    report = {"python": platform.python_version(), "machine": platform.machine(), "datasets": {}}
    for name in [n for n in args.datasets.split(",") if n]:
        data = _load(name, args)
        entry = {"details": data.describe(), "published_best": PUBLISHED_BESTS.get(name),
                 "degenerate_training_sensors": training_sensor_shapes(data.train), "kinds": {}}
        if name == "skab":
            entry["details"].update(groups=args.skab_groups, train_on=args.skab_train_on)
        if name == "smd":
            entry["details"].update(machines=args.smd_machines)
        for kind in [k for k in args.kinds.split(",") if k]:
            try:
                entry["kinds"][kind] = evaluate_kind(data, kind, args.false_alarm_rate)
            except ValueError as exc:  # an unknown kind: report it and measure the rest
                entry["kinds"][kind] = {"kind": kind, "error": str(exc)}
        report["datasets"][name] = entry

    text = json.dumps(report, indent=2, default=str)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    print(_table(report), file=sys.stderr)
    return report


if __name__ == "__main__":
    main()
