"""The Azure ML scoring job (``python -m scoring.entrypoint``): one shard, named, not staged.

The orchestrator sends only names over the Dagster Pipes context (extra ``task``: the shard's
devices, the run's hours and sensors, the run's token). The job reads its devices'
windows from SQL itself (``BSCORE_SQL_URL`` in its environment: on Azure a URL signing in with
the cluster's managed identity, never a password, with ``BSCORE_SQL_AUTH=entra``), loads their current bundles from the blob
store (``BSCORE_BLOB_URL``; a bundle that does not load refuses its own device only), scores
with ``scoring.engine.score_shard``, writes its predictions (one Parquet part per partition in
blob storage, from where the run publishes each hour to SQL)
and reports the shard's summary (counts per partition and device, model versions, devices
missing a model or refused; never rows) as a custom Pipes message. Needs only this package and
``docker/requirements.txt`` (numpy, pandas, pyarrow, scikit-learn and skops, SQLAlchemy,
azure-storage-blob, azure-identity, dagster-pipes).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

from scoring.shard_task import run_shard_task
from scoring.shards import ShardTask

ACCOUNT_URL_VAR = "BSCORE_AML_STORAGE_ACCOUNT_URL"
SQL_URL_VAR = "BSCORE_SQL_URL"
SQL_AUTH_VAR = "BSCORE_SQL_AUTH"
BLOB_URL_VAR = "BSCORE_BLOB_URL"
MESSAGE_INTERVAL_SECONDS = 5.0


class ContainerBlobs:
    """The model store's blob protocol on a container client, rooted at ``prefix``."""

    def __init__(self, container, prefix: str = ""):
        self.container = container
        self.prefix = f"{prefix.strip('/')}/" if prefix.strip("/") else ""

    def read_bytes(self, key: str) -> bytes:
        return self.container.download_blob(self.prefix + key).readall()

    def write_bytes(self, key: str, data: bytes) -> None:
        # A block blob upload commits in one step, so readers never see part of it.
        self.container.upload_blob(self.prefix + key, data, overwrite=True)

    def exists(self, key: str) -> bool:
        return self.container.get_blob_client(self.prefix + key).exists()

    def list(self, prefix: str) -> list[str]:
        names = self.container.list_blob_names(name_starts_with=self.prefix + prefix)
        return sorted(name[len(self.prefix):] for name in names)


class FolderBlobs:
    """The same protocol on a folder (a blob store on a disk the job shares, as in tests)."""

    def __init__(self, root: str):
        self.root = Path(root)

    def read_bytes(self, key: str) -> bytes:
        return (self.root / key).read_bytes()

    def write_bytes(self, key: str, data: bytes) -> None:
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)  # readers see the old file or the new one

    def exists(self, key: str) -> bool:
        return (self.root / key).is_file()

    def list(self, prefix: str) -> list[str]:
        keys = (p.relative_to(self.root).as_posix() for p in self.root.rglob("*") if p.is_file())
        return sorted(k for k in keys if k.startswith(prefix) and not k.rsplit("/", 1)[-1].startswith("."))


def credential():
    """The job's identity: on an Azure ML cluster its managed identity (Azure ML names a
    user-assigned one in ``DEFAULT_IDENTITY_CLIENT_ID``)."""
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential(managed_identity_client_id=os.environ.get("DEFAULT_IDENTITY_CLIENT_ID"))


def open_blobs(url: str):
    """The blob store ``BSCORE_BLOB_URL`` names: ``az://<container>[/<prefix>]`` (connection string
    from ``AZURE_STORAGE_CONNECTION_STRING``), ``https://<account>.blob.core.windows.net/<container>[/<prefix>]``
    (the job's identity), or a folder."""
    from azure.storage.blob import ContainerClient

    parts = urlsplit(url)
    if parts.scheme == "az":
        client = ContainerClient.from_connection_string(os.environ["AZURE_STORAGE_CONNECTION_STRING"], parts.netloc)
        return ContainerBlobs(client, parts.path)
    if parts.scheme == "https":
        container, _, prefix = parts.path.lstrip("/").partition("/")
        return ContainerBlobs(ContainerClient(f"https://{parts.netloc}", container, credential=credential()), prefix)
    return FolderBlobs(url)


def blob_service_client():
    """Pipes' storage account: a connection string when the environment has one (Azurite), else
    the job's identity."""
    from azure.storage.blob import BlobServiceClient

    connection_string = os.environ.get("AZURE_STORAGE_CONNECTION_STRING")
    if connection_string:
        return BlobServiceClient.from_connection_string(connection_string)
    return BlobServiceClient(os.environ[ACCOUNT_URL_VAR], credential=credential())


def main() -> None:
    from dagster_pipes import (
        PipesAzureBlobStorageContextLoader,
        PipesAzureBlobStorageMessageWriter,
        open_dagster_pipes,
    )

    from scoring.shard_sql import ShardSql

    client = blob_service_client()
    with open_dagster_pipes(
        context_loader=PipesAzureBlobStorageContextLoader(client=client),
        message_writer=PipesAzureBlobStorageMessageWriter(client=client, interval=MESSAGE_INTERVAL_SECONDS),
    ) as pipes:
        task = ShardTask.from_json(pipes.get_extra("task"))
        pipes.log.info(f"{task.label}: {len(task.devices)} device(s) x {len(task.hours)} hour(s) x "
                       f"{len(task.sensors)} sensor(s)")
        summary = run_shard_task(task, ShardSql(os.environ[SQL_URL_VAR], os.environ.get(SQL_AUTH_VAR, "password")), open_blobs(os.environ[BLOB_URL_VAR]))
        for device, reason in summary["devices_refused"].items():
            pipes.log.error(f"{task.label}: device {device}: model refused, not scored: {reason}")
        pipes.log.info(f"{task.label}: {summary['rows_scored']} rows scored, {summary['anomalies']} anomalies, "
                       f"{len(summary['devices_refused'])} device(s) refused")
        pipes.report_custom_message(summary)


if __name__ == "__main__":
    main()
