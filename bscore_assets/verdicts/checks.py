"""Check of ``device_verdicts``: the share of device windows found anomalous (voted or judged by
the device model), per hour.

WARN above ``device_anomaly_rate_warn``, ERROR above ``device_anomaly_rate_error``
(``PipelineSettings``); the worst hour decides, and its top devices are in the metadata.
"""

import dagster as dg
import pandas as pd

from bscore_assets.partitions import hour_key

verdict_check_specs = [
    dg.AssetCheckSpec("device_anomaly_rate", asset="device_verdicts", blocking=True,
                      description="Share of device windows found anomalous per hour: WARN above "
                                  "device_anomaly_rate_warn, ERROR above device_anomaly_rate_error; the "
                                  "worst hours' top devices and sensors."),
]
MAX_ROWS_SHOWN = 50


def device_anomaly_rate_result(summaries: dict[pd.Timestamp, dict], warn: float, error: float) -> dg.AssetCheckResult:
    """From each hour's ``scoring.verdicts.verdict_summary``."""
    frame = pd.DataFrame([{"hour": hour_key(hour), "device_windows": s["device_windows"],
                           "anomalous": s["anomalous_device_windows"], "anomaly_rate": round(s["anomaly_rate"], 4)}
                          for hour, s in sorted(summaries.items())],
                         columns=["hour", "device_windows", "anomalous", "anomaly_rate"])
    max_rate = float(frame["anomaly_rate"].max()) if len(frame) else 0.0
    worst = frame.sort_values("anomaly_rate", ascending=False, kind="stable").head(MAX_ROWS_SHOWN)
    over_warn = {hour_key(hour): {"top_devices": s["top_devices"], "top_sensors": s["top_sensors"]}
                 for hour, s in sorted(summaries.items()) if s["anomaly_rate"] > warn}
    return dg.AssetCheckResult(
        check_name="device_anomaly_rate",
        passed=max_rate <= warn,
        severity=dg.AssetCheckSeverity.ERROR if max_rate > error else dg.AssetCheckSeverity.WARN,
        metadata={
            "max_device_anomaly_rate": max_rate,
            "warn_threshold": warn,
            "error_threshold": error,
            "hours_over_warn": int((frame["anomaly_rate"] > warn).sum()),
            "hours_over_error": int((frame["anomaly_rate"] > error).sum()),
            "worst_hours": dg.MetadataValue.md(worst.to_markdown(index=False) if len(worst) else "(none)"),
            "over_warn": dg.MetadataValue.json(dict(list(over_warn.items())[:MAX_ROWS_SHOWN])),
        },
    )
