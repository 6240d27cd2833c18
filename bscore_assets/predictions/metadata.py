"""What a person reads on one prediction partition at a glance: counts, rates, models, a plot."""

from __future__ import annotations

import dagster as dg
import pandas as pd

from bscore_assets.partitions import hour_key
from bscore_assets.predictions.plots import partition_plot_markdown


def partition_metadata(hour: pd.Timestamp, sensor: str, rows: pd.DataFrame, windows: pd.DataFrame) -> dict:
    """Metadata of the (hour, sensor) partition from its predictions and the windows it had.

    Parameters
    ----------
    rows : DataFrame
        The partition's predictions.
    windows : DataFrame
        The partition's windows (``device`` is enough); devices here but not in ``rows``
        had no model for the sensor.
    """
    anomalies = int(rows["is_anomaly"].sum()) if len(rows) else 0
    missing = sorted(set(windows["device"]) - set(rows["device"] if len(rows) else []))
    versions = rows.groupby("device")["model_version"].first().to_dict() if len(rows) else {}
    return {
        "rows_scored": len(rows),
        "anomalies": anomalies,
        "anomaly_rate": round(anomalies / len(rows), 4) if len(rows) else 0.0,
        "devices_scored": int(rows["device"].nunique()) if len(rows) else 0,
        "devices_missing_model": dg.MetadataValue.json(missing),
        "model_versions": dg.MetadataValue.json({str(d): str(v) for d, v in sorted(versions.items())}),
        "plot": dg.MetadataValue.md(partition_plot_markdown(rows, f"sensor {sensor}, {hour_key(hour)}")),
    }
