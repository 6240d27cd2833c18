"""``bscore evaluate``: which labels to use, and the figures as text tables beside the baselines."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from tabulate import tabulate

from scoring.evaluation import Evaluation, read_labels


def labels_dir(home: Path) -> Path:
    """Where ``bscore ingest --label-column`` keeps the labels it found, one CSV per input file."""
    return home / "labels"


def load_labels(paths: list[Path]) -> pd.DataFrame:
    """Every labels file, in one table (errors name the file and line)."""
    return pd.concat([read_labels(path) for path in paths], ignore_index=True)


def stored_label_files(home: Path) -> list[Path]:
    return sorted(labels_dir(home).glob("*.csv"))


def _n(value) -> str:
    return f"{int(value):,}"


def _fmt(value) -> str:
    return "-" if pd.isna(value) else f"{value:.3f}"


def _point_rows(table: pd.DataFrame) -> list[list]:
    return [[name, _n(r.windows), _n(r.labelled), _n(r.flagged), _fmt(r.precision), _fmt(r.recall),
             _fmt(r.f1), _fmt(r.false_alarm_rate), _fmt(r.all_f1), _fmt(r.random_f1)]
            for name, r in table.iterrows()]


def _event_rows(table: pd.DataFrame) -> list[list]:
    return [[name, _n(r.events), _n(r.events_detected), _fmt(r.event_recall), _n(r.alarms),
             _n(r.true_alarms), _fmt(r.alarm_precision), _fmt(r.event_f1), _fmt(r.all_event_f1),
             _fmt(r.random_event_f1), _fmt(r.composite_f1), _fmt(r.all_composite_f1), _fmt(r.random_composite_f1)]
            for name, r in table.iterrows()]


def _adjusted_rows(table: pd.DataFrame) -> list[list]:
    return [[name, _fmt(r.pa_precision), _fmt(r.pa_recall), _fmt(r.pa_f1), _fmt(r.f1)] for name, r in table.iterrows()]


def format_evaluation(evaluation: Evaluation, point_adjusted: bool = False) -> str:
    """Point-wise and event-wise tables for device windows and sensor windows (and the
    point-adjusted ones when asked), each with its baselines in the last columns."""
    parts = []
    for level, table, note in (
        ("device", evaluation.devices, "device windows: a device window is labelled when the device or one of its "
                                       "sensors is, flagged as the device verdict says"),
        ("sensor", evaluation.sensors, "sensor windows, summed over devices"),
    ):
        parts.append(f"{note}\n\npoint-wise (each window a case):\n" + tabulate(
            _point_rows(table), headers=[level, "windows", "labelled", "flagged", "precision", "recall", "F1",
                                         "false alarms", "F1 flag-all", "F1 random"],
            tablefmt="simple", disable_numparse=True, colalign=["left"] + ["right"] * 9))
        parts.append("event-wise (an event is a run of labelled windows, an alarm a run of flagged ones):\n" + tabulate(
            _event_rows(table), headers=[level, "events", "detected", "event recall", "alarms", "true alarms",
                                         "alarm precision", "F1", "flag-all", "random", "composite F1",
                                         "flag-all", "random"],
            tablefmt="simple", disable_numparse=True, colalign=["left"] + ["right"] * 12))
        if point_adjusted:
            parts.append("POINT-ADJUSTED (a detected event counts all its windows as found; inflates scores, "
                         "do not compare with point-wise figures):\n" + tabulate(
                             _adjusted_rows(table), headers=[level, "PA precision", "PA recall", "PA F1",
                                                             "point-wise F1"],
                             tablefmt="simple", disable_numparse=True, colalign=["left"] + ["right"] * 4))
    return "\n\n".join(parts)
