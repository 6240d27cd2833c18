"""The models domain's definitions: ``device_models``, the job that (re)trains them and the job
that imports model files (``bscore models import``)."""

import dagster as dg

from bscore_assets.models.assets import device_models_asset
from bscore_assets.models.imports import model_import_job
from bscore_assets.settings import Settings

training_job = dg.define_asset_job(
    "training_job", selection=["device_models"], description="(Re)train device model bundles.",
)


def defs(settings: Settings) -> dg.Definitions:
    return dg.Definitions(assets=[device_models_asset(settings)], jobs=[training_job, model_import_job])
