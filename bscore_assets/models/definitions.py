"""The models domain's definitions: ``device_models`` and the job that (re)trains them."""

import dagster as dg

from bscore_assets.models.assets import device_models_asset
from bscore_assets.settings import Settings

training_job = dg.define_asset_job(
    "training_job", selection=["device_models"], description="(Re)train device model bundles.",
)


def defs(settings: Settings) -> dg.Definitions:
    return dg.Definitions(assets=[device_models_asset(settings)], jobs=[training_job])
