"""Checks of ``sensor_aggregates``, from the readings the run read and what SQL holds.

``finite_values`` and ``readings_reconciled`` are blocking: a failed one stops scoring the hour.
"""

import dagster as dg

aggregate_check_specs = [
    dg.AssetCheckSpec("finite_values", asset="sensor_aggregates", blocking=True,
                      description="Every window average is a finite number."),
    dg.AssetCheckSpec("readings_reconciled", asset="sensor_aggregates", blocking=True,
                      description="Per hour, SQL holds as many windows as were computed, and their reading "
                                  "counts add up to the distinct raw readings of the hour."),
    dg.AssetCheckSpec("device_coverage", asset="sensor_aggregates",
                      description="Every device with raw readings in an hour has windows for that hour in SQL."),
]


def aggregate_check_results(hours: dict[str, dict]):
    """``hours``: per hour key, what the run found (``non_finite``, ``expected``/``stored`` counts,
    ``devices_missing``)."""
    non_finite = {key: h["non_finite"] for key, h in hours.items() if h.get("non_finite")}
    yield dg.AssetCheckResult(check_name="finite_values", passed=not non_finite,
                              metadata={"non_finite_windows": dg.MetadataValue.json(non_finite)})
    mismatched = {key: {"expected": h["expected"], "stored": h["stored"]}
                  for key, h in hours.items() if h["expected"] != h["stored"]}
    yield dg.AssetCheckResult(check_name="readings_reconciled", passed=not mismatched,
                              metadata={"hours_checked": len(hours),
                                        "mismatched_hours": dg.MetadataValue.json(mismatched)})
    missing = {key: h["devices_missing"] for key, h in hours.items() if h.get("devices_missing")}
    yield dg.AssetCheckResult(check_name="device_coverage", passed=not missing, severity=dg.AssetCheckSeverity.WARN,
                              metadata={"devices_missing_windows": dg.MetadataValue.json(missing)})
