"""Checks of ``sensor_predictions``: the anomaly rate of each partition, and scoring coverage.

Both are blocking: at ERROR the run fails (the CLI exits non-zero naming the check) and nothing
downstream treats the partition as good.
"""

import dagster as dg
import pandas as pd

from bscore_assets.partitions import hour_key
from bscore_assets.settings import PipelineSettings

prediction_check_specs = [
    dg.AssetCheckSpec("anomaly_rate", asset="sensor_predictions", blocking=True,
                      description="Share of windows flagged per (hour, sensor) partition: WARN above "
                                  "anomaly_rate_warn, ERROR above anomaly_rate_error; per-device breakdown."),
    dg.AssetCheckSpec("scoring_coverage", asset="sensor_predictions", blocking=True,
                      description="Every device with windows was scored. ERROR when a partition with windows was "
                                  "scored by no model at all, or a device's model was refused; WARN when some "
                                  "devices have no model yet."),
]
MAX_ROWS_SHOWN = 50


def anomaly_rate_result(summaries, warn: float, error: float) -> dg.AssetCheckResult:
    """Worst partition decides the severity; metadata lists the worst partitions and their top devices."""
    table, worst_devices = [], {}
    for summary in summaries:
        rate = summary.anomaly_rate
        table.append({"hour": hour_key(summary.hour), "sensor": summary.sensor, "rows": summary.rows_scored,
                      "anomaly_rate": round(rate, 4)})
        if summary.rows_scored and rate > warn:
            per_device = summary.device_rates()
            worst_devices[f"{hour_key(summary.hour)}|{summary.sensor}"] = {
                str(d): round(float(r), 4) for d, r in per_device.head(10).items()}
    frame = pd.DataFrame(table, columns=["hour", "sensor", "rows", "anomaly_rate"])
    max_rate = float(frame["anomaly_rate"].max()) if len(frame) else 0.0
    worst = frame.sort_values("anomaly_rate", ascending=False).head(MAX_ROWS_SHOWN)
    return dg.AssetCheckResult(
        check_name="anomaly_rate",
        passed=max_rate <= warn,
        severity=dg.AssetCheckSeverity.ERROR if max_rate > error else dg.AssetCheckSeverity.WARN,
        metadata={
            "max_anomaly_rate": max_rate,
            "warn_threshold": warn,
            "error_threshold": error,
            "partitions_over_warn": int((frame["anomaly_rate"] > warn).sum()),
            "partitions_over_error": int((frame["anomaly_rate"] > error).sum()),
            "worst_partitions": dg.MetadataValue.md(worst.to_markdown(index=False) if len(worst) else "(none)"),
            "per_device_rate": dg.MetadataValue.json(dict(list(worst_devices.items())[:MAX_ROWS_SHOWN])),
        },
    )


def coverage_result(summaries, missing: pd.DataFrame, refused: dict[str, str]) -> dg.AssetCheckResult:
    unscored = sorted(f"{hour_key(s.hour)}|{s.sensor}" for s in summaries if s.windows and not s.rows_scored)
    missing_models = (missing[~missing["device"].isin(list(refused))].groupby("device")["sensor"]
                      .apply(lambda s: sorted(set(map(str, s)))).to_dict() if len(missing) else {})
    devices_with_windows = set().union(*(s.devices_with_windows for s in summaries))
    devices_scored = set().union(*(s.devices for s in summaries))
    error = bool(unscored or refused)
    return dg.AssetCheckResult(
        check_name="scoring_coverage",
        passed=not (unscored or refused or missing_models),
        severity=dg.AssetCheckSeverity.ERROR if error else dg.AssetCheckSeverity.WARN,
        metadata={
            "devices_with_windows": len(devices_with_windows),
            "devices_scored": len(devices_scored),
            "partitions_scored_by_no_model": dg.MetadataValue.json(unscored[:MAX_ROWS_SHOWN]),
            "devices_missing_model": dg.MetadataValue.json({str(k): v for k, v in missing_models.items()}),
            "devices_model_refused": dg.MetadataValue.json(refused),
        },
    )


def prediction_check_results(summaries, missing: pd.DataFrame, refused: dict[str, str], pipeline: PipelineSettings):
    """Both checks from the run's partition summaries (``summaries.PartitionSummary``)."""
    yield anomaly_rate_result(summaries, pipeline.anomaly_rate_warn, pipeline.anomaly_rate_error)
    yield coverage_result(summaries, missing, refused)
