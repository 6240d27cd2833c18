"""The aggregation domain's definitions: ``sensor_aggregates`` computed from the raw readings, or
with ``BSCORE_AGGREGATION=asa`` both hourly assets written by Stream Analytics and the sensor
that records them (``aggregation.asa``)."""

import dagster as dg

from bscore_assets.aggregation.assets import sensor_aggregates_asset
from bscore_assets.settings import Settings


def defs(settings: Settings) -> dg.Definitions:
    if settings.aggregation == "asa":
        from bscore_assets.aggregation.asa import asa_aggregation_objects

        specs, sensors = asa_aggregation_objects(settings)
        return dg.Definitions(assets=specs, sensors=sensors)
    return dg.Definitions(assets=[sensor_aggregates_asset(settings)])
