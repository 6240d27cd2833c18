"""bscore's Dagster definitions: every domain's objects, with resources chosen by the environment.

Local defaults need no configuration; ``BSCORE_*`` variables (see README) switch each
outside system to its Azure implementation under the same resource key.
"""

import dagster as dg

from bscore_assets.aggregation.assets import sensor_aggregates
from bscore_assets.ingestion.assets import raw_readings
from bscore_assets.ingestion.sensors import event_ingestion_sensor, fleet_partitions_sensor
from bscore_assets.jobs import ingest_job, scoring_job, training_job
from bscore_assets.models.assets import device_models
from bscore_assets.models.schedules import device_retraining_schedule
from bscore_assets.predictions.assets import sensor_predictions
from bscore_assets.predictions.schedules import hourly_scoring_schedule
from bscore_assets.predictions.sensors import model_rescoring_sensor
from bscore_assets.settings import PipelineSettings, Settings
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
        "pipeline": PipelineSettings(training_hours=settings.training_hours),
    }


def build_defs(settings: Settings | None = None) -> dg.Definitions:
    settings = settings or Settings.from_env()
    return dg.Definitions(
        assets=[raw_readings, sensor_aggregates, device_models, sensor_predictions],
        jobs=[ingest_job, training_job, scoring_job],
        schedules=[hourly_scoring_schedule, device_retraining_schedule],
        sensors=[event_ingestion_sensor, fleet_partitions_sensor, model_rescoring_sensor],
        resources=build_resources(settings),
    )


defs = build_defs()
