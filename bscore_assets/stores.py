"""The blob store and the event source the settings pick, built without the rest of the definitions.

``bscore_assets.definitions`` builds every resource from these; a command that needs only these
two (``bscore ingest``) builds them here, without importing every domain.
"""

from __future__ import annotations

from bscore_assets.settings import Settings
from resources.blob import BlobStore, LocalBlobStore
from resources.events import EventSource, LocalEventSource


def build_blob(settings: Settings) -> BlobStore:
    if settings.blob_url.startswith(("az://", "https://")):
        from resources.azure_blob import AzureBlobStore

        return AzureBlobStore.from_url(settings.blob_url)
    if "://" in settings.blob_url:
        raise ValueError(f"BSCORE_BLOB_URL: scheme {settings.blob_url.split('://')[0] + '://'!r} is not supported; "
                         "give a folder, az://<container>[/<prefix>] or https://<account>.blob.core.windows.net/<container>")
    return LocalBlobStore(root=settings.blob_url)


def build_events(settings: Settings) -> EventSource:
    if settings.events == "local":
        return LocalEventSource(landing=str(settings.landing))
    if settings.events == "eventhub":
        from resources.eventhub import EventHubSource

        return EventHubSource.from_env()
    raise ValueError(f"BSCORE_EVENTS={settings.events!r} must be 'local' or 'eventhub'")
