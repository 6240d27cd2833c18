"""The verdicts domain's definitions: ``device_verdicts`` and the job that votes them."""

import dagster as dg

from bscore_assets.settings import Settings
from bscore_assets.verdicts.assets import device_verdicts_asset

verdicts_job = dg.define_asset_job(
    "verdicts_job", selection=["device_verdicts"], description="Vote each device window's verdict from its sensors.",
)


def defs(settings: Settings) -> dg.Definitions:
    return dg.Definitions(assets=[device_verdicts_asset(settings)], jobs=[verdicts_job])
