"""Re-score the recent hours when a device gets a new model version.

The sensor reads ``device_models`` materializations after its cursor (a storage id, so a
restart resumes after the last one it handled). A run covers whole (hour, sensor)
partitions, so re-scoring a device re-scores its neighbours in those partitions with their
unchanged current models: the same result, written again.
"""

from __future__ import annotations

import dagster as dg

from bscore_assets.hours import aggregated_hours, hour_blocks
from bscore_assets.jobs import scoring_job
from bscore_assets.partitions import hour_key, sensor_partitions_def
from bscore_assets.runs import hour_sensor_range_tags
from bscore_assets.settings import Settings

PAGE = 1000


def new_model_versions(instance: dg.DagsterInstance, cursor: str | None) -> tuple[dict[str, str], str | None]:
    """``{device: version}`` registered by ``device_models`` materializations after ``cursor``, and the next cursor."""
    result = instance.fetch_materializations(dg.AssetKey("device_models"), limit=PAGE, cursor=cursor, ascending=True)
    versions = {}
    for record in result.records:
        materialization = record.asset_materialization
        trained = materialization.metadata.get("versions")
        version = trained.value.get(materialization.partition) if trained is not None else None
        if version is not None:
            versions[materialization.partition] = version
    return versions, (result.cursor if result.records else cursor)


@dg.sensor(job=scoring_job, minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.STOPPED)
def model_rescoring_sensor(context: dg.SensorEvaluationContext):
    """When devices get new model versions, re-score the last ``BSCORE_RESCORING_HOURS``
    aggregated hours for every sensor."""
    settings = Settings.from_env()
    versions, cursor = new_model_versions(context.instance, context.cursor)
    if not versions:
        return dg.SensorResult(skip_reason="no new model versions", cursor=cursor)
    sensors = context.instance.get_dynamic_partitions(sensor_partitions_def.name)
    hours = sorted(aggregated_hours(context.instance))[-settings.rescoring_hours:]
    described = ", ".join(f"{d}@{v}" for d, v in sorted(versions.items()))
    if not sensors or not hours:
        return dg.SensorResult(skip_reason=f"new versions {described}, but nothing aggregated to re-score",
                               cursor=cursor)
    context.log.info(f"new versions {described}: re-scoring {len(hours)} hour(s) x {len(sensors)} sensor(s)")
    requests = [
        dg.RunRequest(run_key=f"rescore-{cursor}-{hour_key(first)}",
                      tags={**hour_sensor_range_tags(first, last, sensors), "bscore/new_models": described[:200]})
        for first, last in hour_blocks(hours)
    ]
    return dg.SensorResult(run_requests=requests, cursor=cursor)
