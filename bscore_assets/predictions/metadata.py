"""What a person reads on one prediction partition at a glance: counts, rates, models, a plot."""

from __future__ import annotations

import dagster as dg
import pandas as pd

from bscore_assets.partitions import hour_key
from bscore_assets.predictions.plots import partition_plot_markdown
from bscore_assets.predictions.summaries import PartitionSummary

MAX_PLOTS_PER_RUN = 12


def partitions_to_plot(summaries: list[PartitionSummary], limit: int = MAX_PLOTS_PER_RUN) -> set[tuple]:
    """The (hour, sensor) partitions worth a plot: the ``limit`` with the highest anomaly rates
    (so every partition over the WARN rate comes first), among those with anomalies; a run of a
    single partition always gets its plot. Drawing is the costly part of metadata."""
    if len(summaries) == 1:
        only = summaries[0]
        return {(only.hour, only.sensor)} if only.rows_scored else set()
    worst = sorted((s for s in summaries if s.anomalies), key=lambda s: -s.anomaly_rate)
    return {(s.hour, s.sensor) for s in worst[:limit]}


def partition_metadata(summary: PartitionSummary, plot_rows: pd.DataFrame | None = None) -> dict:
    """Metadata of the (hour, sensor) partition from its summary.

    Parameters
    ----------
    summary : PartitionSummary
        The partition's counts over every shard; devices with windows but no predictions had
        no model for the sensor, or their model was refused.
    plot_rows : DataFrame, optional
        Predictions of the devices to draw (the worst few); no plot when None.
    """
    metadata = {
        "windows": summary.windows,
        "rows_scored": summary.rows_scored,
        "anomalies": summary.anomalies,
        "anomaly_rate": round(summary.anomaly_rate, 4),
        "devices_scored": len(summary.devices),
        "devices_missing_model": dg.MetadataValue.json(sorted(summary.devices_with_windows - set(summary.devices))),
        "model_versions": dg.MetadataValue.json(dict(sorted(summary.model_versions.items()))),
        "scored": summary.scored,
    }
    if plot_rows is not None:
        title = f"sensor {summary.sensor}, {hour_key(summary.hour)}"
        metadata["plot"] = dg.MetadataValue.md(partition_plot_markdown(plot_rows, title,
                                                                       devices_total=len(summary.devices)))
    return metadata
