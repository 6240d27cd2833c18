"""Checks of ``sensor_predictions``: the anomaly rate of each partition, and scoring coverage."""

import dagster as dg
import pandas as pd

from bscore_assets.partitions import hour_key
from bscore_assets.settings import PipelineSettings

prediction_check_specs = [
    dg.AssetCheckSpec("anomaly_rate", asset="sensor_predictions",
                      description="Share of windows flagged per (hour, sensor) partition: WARN above "
                                  "anomaly_rate_warn, ERROR above anomaly_rate_error; per-device breakdown."),
    dg.AssetCheckSpec("scoring_coverage", asset="sensor_predictions",
                      description="Every device with windows was scored, or is reported as missing a model."),
]


def anomaly_rate_result(partitions, warn: float, error: float) -> dg.AssetCheckResult:
    """Worst partition decides the severity; metadata lists every partition and the top devices."""
    table, worst_devices = [], {}
    for hour, sensor, rows in partitions:
        rate = float(rows["is_anomaly"].mean()) if len(rows) else 0.0
        table.append({"hour": hour_key(hour), "sensor": sensor, "rows": len(rows), "anomaly_rate": round(rate, 4)})
        if len(rows):
            per_device = rows.groupby("device")["is_anomaly"].mean().sort_values(ascending=False)
            worst_devices[f"{hour_key(hour)}|{sensor}"] = {d: round(float(r), 4) for d, r in per_device.head(10).items()}
    frame = pd.DataFrame(table)
    max_rate = float(frame["anomaly_rate"].max()) if len(frame) else 0.0
    severity = dg.AssetCheckSeverity.ERROR if max_rate > error else dg.AssetCheckSeverity.WARN
    return dg.AssetCheckResult(
        check_name="anomaly_rate",
        passed=max_rate <= warn,
        severity=severity,
        metadata={
            "max_anomaly_rate": max_rate,
            "warn_threshold": warn,
            "error_threshold": error,
            "partitions_over_warn": int((frame["anomaly_rate"] > warn).sum()) if len(frame) else 0,
            "partitions_over_error": int((frame["anomaly_rate"] > error).sum()) if len(frame) else 0,
            "partitions": dg.MetadataValue.md(frame.to_markdown(index=False) if len(frame) else "(none)"),
            "per_device_rate": dg.MetadataValue.json(worst_devices),
        },
    )


def prediction_check_results(partitions, windows: pd.DataFrame, missing: pd.DataFrame, refused: dict[str, str],
                             pipeline: PipelineSettings):
    yield anomaly_rate_result(partitions, pipeline.anomaly_rate_warn, pipeline.anomaly_rate_error)
    scored_devices = set()
    for _, _, rows in partitions:
        scored_devices |= set(rows["device"].unique()) if len(rows) else set()
    missing_devices = set(missing["device"].unique()) if len(missing) else set()
    unaccounted = set(windows["device"].unique()) - scored_devices - missing_devices
    missing = missing[~missing["device"].isin(list(refused))] if len(missing) else missing
    yield dg.AssetCheckResult(
        check_name="scoring_coverage",
        passed=not unaccounted and not missing_devices,
        severity=dg.AssetCheckSeverity.ERROR if unaccounted or refused else dg.AssetCheckSeverity.WARN,
        metadata={
            "devices_with_windows": len(set(windows["device"].unique())),
            "devices_scored": len(scored_devices),
            "devices_missing_model": dg.MetadataValue.json(
                missing.groupby("device")["sensor"].apply(list).to_dict() if len(missing) else {}),
            "devices_model_refused": dg.MetadataValue.json(refused),
            "devices_unaccounted": dg.MetadataValue.json(sorted(unaccounted)),
        },
    )
