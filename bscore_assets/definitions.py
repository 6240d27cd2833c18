"""bscore's Dagster definitions: every domain's objects, with resources chosen by the settings.

Local defaults need no configuration; ``BSCORE_*`` variables (docs/configuration.md) switch each
outside system to its Azure implementation under the same resource key.
"""

import dagster as dg

from bscore_assets.aggregation.assets import sensor_aggregates
from bscore_assets.alerts.sensors import alert_objects
from bscore_assets.automation import automation_sensor, with_automation
from bscore_assets.evaluation_report import labels_dir
from bscore_assets.ingestion.assets import raw_readings
from bscore_assets.ingestion.sensors import build_fleet_partitions_sensor, build_late_readings_sensor
from bscore_assets.jobs import ingest_job, scoring_job, training_job, verdicts_job
from bscore_assets.models.assets import device_models
from bscore_assets.predictions.assets import sensor_predictions
from bscore_assets.predictions.freshness import build_newest_hour_check, build_newest_hour_freshness_sensor
from bscore_assets.settings import PipelineSettings, Settings
from bscore_assets.verdicts.assets import device_verdicts
from resources.blob import LocalBlobStore
from resources.compute import LocalComputeBackend
from resources.events import LocalEventSource
from resources.sql import SqlStore


def build_resources(settings: Settings) -> dict:
    """One implementation per outside system, picked by the settings."""
    if settings.blob_url.startswith(("az://", "https://")):
        from resources.azure_blob import AzureBlobStore

        blob = AzureBlobStore.from_url(settings.blob_url)
    elif "://" in settings.blob_url:
        raise ValueError(f"BSCORE_BLOB_URL: scheme {settings.blob_url.split('://')[0] + '://'!r} is not supported; "
                         "give a folder, az://<container>[/<prefix>] or https://<account>.blob.core.windows.net/<container>")
    else:
        blob = LocalBlobStore(root=settings.blob_url)
    if settings.events == "local":
        events = LocalEventSource(landing=str(settings.landing))
    elif settings.events == "eventhub":
        from resources.eventhub import EventHubSource

        events = EventHubSource.from_env()
    else:
        raise ValueError(f"BSCORE_EVENTS={settings.events!r} must be 'local' or 'eventhub'")
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
        "sql": SqlStore(url=dg.EnvVar("BSCORE_SQL_URL") if settings.sql_url_from_env else settings.sql_url),
        "blob": blob,
        "events": events,
        "compute": compute,
        "pipeline": PipelineSettings(training_hours=settings.training_hours, declared_sensors=list(settings.sensors),
                                     detector=settings.detector, false_alarm_rate=settings.false_alarm_rate,
                                     anomaly_rate_warn=settings.anomaly_rate_warn,
                                     anomaly_rate_error=settings.anomaly_rate_error,
                                     device_vote_min_sensors=settings.device_vote_min_sensors,
                                     labels_dir=str(labels_dir(settings.home))),
    }


def build_defs(settings: Settings | None = None) -> dg.Definitions:
    settings = settings or Settings.from_env()
    if settings.aggregation == "local":
        hourly = with_automation([raw_readings, sensor_aggregates], settings)
        hourly_jobs, hourly_sensors = [ingest_job], [build_late_readings_sensor(settings)]
    elif settings.aggregation == "asa":  # Stream Analytics writes both; a sensor records them
        from bscore_assets.aggregation.asa import asa_aggregation_objects

        (hourly, hourly_sensors), hourly_jobs = asa_aggregation_objects(settings), []
    else:
        raise ValueError(f"BSCORE_AGGREGATION={settings.aggregation!r} must be 'local' or 'asa'")
    alert_sensors, alert_channel = alert_objects(settings)  # none unless a webhook is configured
    return dg.Definitions(
        assets=[*hourly, *with_automation([device_models, sensor_predictions, device_verdicts], settings)],
        asset_checks=[build_newest_hour_check(settings)],
        jobs=[*hourly_jobs, training_job, scoring_job, verdicts_job],
        sensors=[automation_sensor(), *hourly_sensors, build_fleet_partitions_sensor(settings),
                 build_newest_hour_freshness_sensor(settings), *alert_sensors],
        resources={**build_resources(settings), **alert_channel},
    )

