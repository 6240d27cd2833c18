"""What a person reads on one prediction partition at a glance: counts, rates, models, a plot."""

from __future__ import annotations

import dagster as dg
import pandas as pd

from bscore_assets.partitions import hour_key
from bscore_assets.predictions.plots import partition_plot_markdown

MAX_PLOTS_PER_RUN = 12


def partitions_to_plot(partitions, limit: int = MAX_PLOTS_PER_RUN) -> set[tuple]:
    """The (hour, sensor) partitions worth a plot: the ``limit`` with the highest anomaly rates
    (so every partition over the WARN rate comes first), among those with anomalies; a run of a
    single partition always gets its plot. Drawing is the costly part of metadata."""
    if len(partitions) == 1:
        hour, sensor, rows, _ = partitions[0]
        return {(hour, sensor)} if len(rows) else set()
    rates = [(float(rows["is_anomaly"].mean()), hour, sensor) for hour, sensor, rows, _ in partitions if len(rows)]
    worst = sorted((r for r in rates if r[0] > 0), key=lambda r: -r[0])
    return {(hour, sensor) for _, hour, sensor in worst[:limit]}


def partition_metadata(hour: pd.Timestamp, sensor: str, rows: pd.DataFrame, windows: pd.DataFrame,
                       plot: bool = True) -> dict:
    """Metadata of the (hour, sensor) partition from its predictions and the windows it had.

    Parameters
    ----------
    rows : DataFrame
        The partition's predictions.
    windows : DataFrame
        The partition's windows (``device`` is enough); devices here but not in ``rows``
        had no model for the sensor, or their model was refused.
    plot : bool
        Whether to draw the partition's plot (costly: only where someone will look).
    """
    anomalies = int(rows["is_anomaly"].sum()) if len(rows) else 0
    missing = sorted(set(windows["device"]) - set(rows["device"] if len(rows) else []))
    versions = rows.groupby("device", observed=True)["model_version"].first().to_dict() if len(rows) else {}
    metadata = {
        "windows": len(windows),
        "rows_scored": len(rows),
        "anomalies": anomalies,
        "anomaly_rate": round(anomalies / len(rows), 4) if len(rows) else 0.0,
        "devices_scored": int(rows["device"].nunique()) if len(rows) else 0,
        "devices_missing_model": dg.MetadataValue.json(missing),
        "model_versions": dg.MetadataValue.json({str(d): str(v) for d, v in sorted(versions.items())}),
    }
    if plot:
        metadata["plot"] = dg.MetadataValue.md(partition_plot_markdown(rows, f"sensor {sensor}, {hour_key(hour)}"))
    return metadata
