"""The ingestion domain's definitions: ``raw_readings`` drained from the event source, the
sensors that watch late readings and the fleet, and the job that drains and aggregates hours."""

import dagster as dg

from bscore_assets.ingestion.assets import raw_readings_asset
from bscore_assets.ingestion.sensors import build_fleet_partitions_sensor, build_late_readings_sensor
from bscore_assets.settings import Settings

# Drains and aggregates in one run: both assets are hourly, and the CLI brings hours up to date with it.
ingest_job = dg.define_asset_job(
    "ingest_job", selection=["raw_readings", "sensor_aggregates"],
    description="Drain the event source into raw readings and aggregate the hours' windows into SQL.",
)


def defs(settings: Settings) -> dg.Definitions:
    """With ``BSCORE_AGGREGATION=asa`` Stream Analytics archives the raw readings (the aggregation
    domain records them), so only the fleet's sensor is here."""
    fleet_sensor = build_fleet_partitions_sensor(settings)
    if settings.aggregation != "local":
        return dg.Definitions(sensors=[fleet_sensor])
    return dg.Definitions(
        assets=[raw_readings_asset(settings)],
        jobs=[ingest_job],
        sensors=[build_late_readings_sensor(settings), fleet_sensor],
    )
