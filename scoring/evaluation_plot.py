"""A PNG of an :class:`scoring.evaluation.Evaluation`: F1 and false alarms beside the baselines."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

MAX_BARS = 30


def plot_evaluation(evaluation, path: str | Path, title: str = "bscore verdicts against labels") -> Path:
    """Write one panel per level (sensors, devices): per row, point-wise F1, composite F1, the
    flag-everything and random F1, and the false-alarm rate. Levels with more than
    ``MAX_BARS`` rows show the lowest-F1 ones and the overall row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    levels = [("sensor windows, per sensor", evaluation.sensors), ("device windows, per device", evaluation.devices)]
    fig, axes = plt.subplots(len(levels), 1, figsize=(11, 8.5), squeeze=False)
    for ax, (name, table) in zip(axes[:, 0], levels):
        _panel(ax, name, _shown(table))
    axes[0, 0].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    fig.suptitle(title)
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path


def _shown(table: pd.DataFrame) -> pd.DataFrame:
    rows, overall = table.iloc[:-1], table.iloc[-1:]
    if len(rows) > MAX_BARS - 1:
        rows = rows.sort_values("f1", na_position="first").iloc[: MAX_BARS - 1]
    return pd.concat([rows, overall])


BARS = [
    ("f1", "F1 (point-wise)", "#1f77b4", None),
    ("composite_f1", "composite F1 (event recall, point-wise precision)", "#9ecae1", None),
    ("all_f1", "point-wise F1, flag everything", "#bbbbbb", "//"),
    ("random_f1", "point-wise F1, random at the same rate", "#dddddd", ".."),
    ("false_alarm_rate", "false-alarm rate", "#d62728", None),
]


def _panel(ax, name: str, table: pd.DataFrame) -> None:
    x = np.arange(len(table))
    width = 0.8 / len(BARS)
    top = np.nanmax(table[[column for column, *_ in BARS]].astype(float).to_numpy(), initial=0.0)
    for i, (column, label, color, hatch) in enumerate(BARS):
        values = table[column].astype(float).fillna(0.0).to_numpy()
        ax.bar(x + (i - (len(BARS) - 1) / 2) * width, values, width, label=label, color=color, hatch=hatch,
               edgecolor="#555555", linewidth=0.4)
    ax.set_xticks(x, [str(k) for k in table.index], rotation=30 if len(table) > 8 else 0, ha="right" if len(table) > 8 else "center",
                  fontsize=8)
    ax.set_ylim(0, min(1.05, max(0.1, top * 1.15)))
    ax.set_ylabel("share")
    ax.set_title(f"{name} ({int(table['labelled'].iloc[-1]):,} labelled of {int(table['windows'].iloc[-1]):,} windows)",
                 fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.axvline(len(table) - 1.5, color="#888888", linewidth=0.8)
