"""The predictions domain's definitions: ``sensor_predictions``, the check and sensor that watch
the newest hour's deadline, the job that scores, and on Azure ML the sensor that cancels jobs
whose run died with its host."""

import dagster as dg

from bscore_assets.predictions.assets import sensor_predictions_asset
from bscore_assets.predictions.freshness import build_newest_hour_check, build_newest_hour_freshness_sensor
from bscore_assets.predictions.orphan_jobs import azureml_orphan_jobs
from bscore_assets.settings import Settings

scoring_job = dg.define_asset_job(
    "scoring_job", selection=["sensor_predictions"], description="Score hours x sensors with the current models.",
)


def defs(settings: Settings) -> dg.Definitions:
    return dg.Definitions(
        assets=[sensor_predictions_asset(settings)],
        asset_checks=[build_newest_hour_check(settings)],
        jobs=[scoring_job],
        sensors=[build_newest_hour_freshness_sensor(settings)]
        + ([azureml_orphan_jobs] if settings.compute == "azureml" else []),
    )
