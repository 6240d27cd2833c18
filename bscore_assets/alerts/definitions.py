"""The alerts domain's definitions: the alert sensors and their channel, only when a webhook is
configured (``BSCORE_TEAMS_WEBHOOK_URL`` or ``BSCORE_ALERT_WEBHOOK_URL``)."""

import dagster as dg

from bscore_assets.alerts.sensors import alert_objects
from bscore_assets.settings import Settings


def defs(settings: Settings) -> dg.Definitions:
    sensors, channel = alert_objects(settings)
    return dg.Definitions(sensors=sensors, resources=channel)
