"""A picture of one prediction partition: each device's sensor values over the hour, anomalies marked.

Rendered with matplotlib's Agg backend (no display) to a PNG, embedded in markdown metadata
as a base64 data URI so the Dagster UI shows it on the partition.
"""

from __future__ import annotations

import base64
import io

import pandas as pd

MAX_DEVICES = 4


def worst_devices(rows: pd.DataFrame, limit: int = MAX_DEVICES) -> list[str]:
    """The ``limit`` devices with the most anomalies (ties by device id)."""
    counts = rows.groupby("device")["is_anomaly"].sum().reset_index()
    counts = counts.sort_values(["is_anomaly", "device"], ascending=[False, True])
    return counts["device"].head(limit).tolist()


def partition_png(rows: pd.DataFrame, title: str, limit: int = MAX_DEVICES, devices_total: int | None = None) -> bytes:
    """PNG of the values of the worst ``limit`` devices, one line each, anomalies as red crosses.

    Parameters
    ----------
    rows : DataFrame
        Predictions of one (hour, sensor): ``ts, device, value, is_anomaly``.
    title : str
        The figure's title.
    limit : int
        At most this many devices are drawn (those with the most anomalies).
    devices_total : int, optional
        Devices in the whole partition, when ``rows`` holds only those to draw.
    """
    # matplotlib takes a second to import: only a run that draws pays it.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates
    import matplotlib.pyplot as plt

    devices = worst_devices(rows, limit)
    total = devices_total if devices_total is not None else rows["device"].nunique()
    # matplotlib takes a second or two to import: only a run that plots pays for it.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates  # noqa: F401  (the formatter below)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 2.6), dpi=80)
    try:
        for device in devices:
            mine = rows[rows["device"] == device].sort_values("ts")
            line = ax.plot(mine["ts"], mine["value"], linewidth=0.8, label=f"device {device}")[0]
            flagged = mine[mine["is_anomaly"]]
            ax.scatter(flagged["ts"], flagged["value"], marker="x", s=28, color="red", zorder=3,
                       label="anomaly" if device == devices[0] else None)
            line.set_alpha(0.85)
        shown = f" (worst {len(devices)} of {total} devices)" if total > len(devices) else ""
        ax.set_title(title + shown, fontsize=9)
        ax.set_ylabel("value", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.xaxis.set_major_formatter(matplotlib.dates.DateFormatter("%H:%M"))
        if devices:
            ax.legend(fontsize=7, loc="upper right", ncol=min(len(devices) + 1, 5))
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
        return buffer.getvalue()
    finally:
        plt.close(fig)


def partition_plot_markdown(rows: pd.DataFrame, title: str, limit: int = MAX_DEVICES,
                            devices_total: int | None = None) -> str:
    """Markdown with the partition's plot inline, or a note when there is nothing to draw."""
    if rows.empty:
        return f"*{title}: no windows scored*"
    encoded = base64.b64encode(partition_png(rows, title, limit, devices_total)).decode()
    return f"![{title}](data:image/png;base64,{encoded})"
