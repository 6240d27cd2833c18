"""bscore's Dagster definitions: every domain's objects, with resources chosen by the settings.

Each domain (``ingestion``, ``aggregation``, ``models``, ``predictions``, ``verdicts``,
``alerts``, ``retention``) exposes ``defs(settings)`` with its assets, checks, automation conditions, sensors
and jobs; ``build_defs`` merges them with the resources. Nothing is built at import: the code
location (the root ``definitions.py``) reads the ``BSCORE_*`` variables once, into the
``Settings`` given here. Local defaults need no configuration; those variables (docs/configuration.md)
switch each outside system to its Azure implementation under the same resource key (the
Event Hubs and Azure ML implementations then read their own connection variables).
"""

import warnings

import dagster as dg

from bscore_assets.aggregation import definitions as aggregation
from bscore_assets.alerts import definitions as alerts
from bscore_assets.automation import automation_sensor
from bscore_assets.ingestion import definitions as ingestion
from bscore_assets.models import definitions as models
from bscore_assets.predictions import definitions as predictions
from bscore_assets.retention import definitions as retention
from bscore_assets.settings import PipelineSettings, Settings
from bscore_assets.stores import build_blob, build_events
from bscore_assets.verdicts import definitions as verdicts
from bscore_assets.verdicts.evaluation_report import labels_dir
from resources.compute import LocalComputeBackend
from resources.sql import SqlStore

DOMAINS = (ingestion, aggregation, models, predictions, verdicts, alerts, retention)


def build_resources(settings: Settings) -> dict:
    """One implementation per outside system, picked by the settings."""
    blob, events = build_blob(settings), build_events(settings)
    if settings.compute == "local":
        compute = LocalComputeBackend()
    elif settings.compute == "azureml":
        from resources.azureml import AzureMLComputeBackend

        compute = AzureMLComputeBackend.from_env()
    else:
        raise ValueError(f"BSCORE_COMPUTE={settings.compute!r} must be 'local' or 'azureml'")
    return {
        # A URL from the environment may hold a password: the resource keeps the variable's
        # name, which is all the UI shows, and Dagster resolves it when a run starts.
        "sql": SqlStore(url=dg.EnvVar("BSCORE_SQL_URL") if settings.sql_url_from_env else settings.sql_url,
                        auth=settings.sql_auth),
        "blob": blob,
        "events": events,
        "compute": compute,
        "pipeline": PipelineSettings(training_hours=settings.training_hours, declared_sensors=list(settings.sensors),
                                     detector=settings.detector, false_alarm_rate=settings.false_alarm_rate,
                                     anomaly_rate_warn=settings.anomaly_rate_warn,
                                     anomaly_rate_error=settings.anomaly_rate_error,
                                     device_vote_min_sensors=settings.device_vote_min_sensors,
                                     device_verdict=settings.device_verdict,
                                     labels_dir=str(labels_dir(settings.home))),
    }


def build_defs(settings: Settings) -> dg.Definitions:
    """Every domain's definitions built from ``settings``, and the resources they name."""
    if settings.aggregation not in ("local", "asa"):
        raise ValueError(f"BSCORE_AGGREGATION={settings.aggregation!r} must be 'local' or 'asa'")
    # The project chose these beta APIs (BackfillPolicy: a backfill of many hours is one run;
    # MultiToSingleDimensionPartitionMapping: hour x sensor onto hours): warning about them on
    # every `dagster` command tells a user nothing they can act on. Only our definitions' own
    # BetaWarnings are silenced, while they are built; the user's filters are restored after.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=dg.BetaWarning)
        return dg.Definitions.merge(
            *(domain.defs(settings) for domain in DOMAINS),
            dg.Definitions(sensors=[automation_sensor()], resources=build_resources(settings)),
        )
