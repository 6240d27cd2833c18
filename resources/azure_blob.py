"""Blob storage on Azure Blob Storage, the cloud twin of ``LocalBlobStore``.

``BSCORE_BLOB_URL=az://<container>[/<prefix>]`` authenticates with the connection string in
``AZURE_STORAGE_CONNECTION_STRING``; ``https://<account>.blob.core.windows.net/<container>[/<prefix>]``
with ``DefaultAzureCredential`` (managed identity, ``az login``, ...). The secret is read from
the environment when a client is built, so it never sits in resource config, the UI or logs.
"""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from urllib.parse import urlsplit

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError, ServiceRequestError, ServiceResponseError
from azure.storage.blob import ContainerClient, ExponentialRetry

from resources.blob import BlobStore

CONNECTION_STRING_ENV = "AZURE_STORAGE_CONNECTION_STRING"
# The SDK's default waits 15 s, 18 s and 24 s between attempts, hiding an outage inside one
# call for about a minute. Give up after a few seconds instead and let the run's retry
# policy (bscore_assets/retries.py) retry the whole step, where the UI shows it.
CLIENT_OPTIONS = {"retry_policy": ExponentialRetry(initial_backoff=1, increment_base=2, retry_total=2),
                  "connection_timeout": 10}

_containers: dict[tuple, ContainerClient] = {}
_containers_lock = threading.Lock()


def container_client(container: str, account_url: str | None = None,
                     connection_string_env: str = CONNECTION_STRING_ENV) -> ContainerClient:
    """A client of ``container``, created if missing, shared by every caller in the process.

    Parameters
    ----------
    container : str
        Container name.
    account_url : str, optional
        ``https://<account>.blob.core.windows.net``; authenticates with ``DefaultAzureCredential``.
        Without it, the connection string in the environment variable ``connection_string_env``.
    connection_string_env : str
        Name of the environment variable holding the connection string.

    Returns
    -------
    ContainerClient
    """
    if account_url:
        key = ("url", account_url, container)
    else:
        connection_string = os.environ.get(connection_string_env)
        if not connection_string:
            raise ValueError(f"set {connection_string_env} (a storage connection string) or use an account URL")
        key = ("env", connection_string, container)
    with _containers_lock:
        client = _containers.get(key)
        if client is None:
            if account_url:
                from azure.identity import DefaultAzureCredential

                client = ContainerClient(account_url, container, credential=DefaultAzureCredential(), **CLIENT_OPTIONS)
            else:
                client = ContainerClient.from_connection_string(connection_string, container, **CLIENT_OPTIONS)
            with unreachable_as_connection_error(client):
                try:
                    client.create_container()
                except ResourceExistsError:
                    pass
            _containers[key] = client
        return client


@contextmanager
def unreachable_as_connection_error(client: ContainerClient):
    """A service that cannot be reached raises ``ConnectionError`` naming its host.

    The SDK's message may quote the request URL, which carries the SAS token of a SAS
    connection string, so it is not repeated.
    """
    try:
        yield
    except (ServiceRequestError, ServiceResponseError) as exc:
        raise ConnectionError(f"Blob Storage at {client.primary_hostname} is unreachable "
                              f"({type(exc).__name__} after retries)") from None


class AzureBlobStore(BlobStore):
    """Blobs in one container, under an optional key prefix."""

    container: str
    prefix: str = ""
    account_url: str | None = None
    connection_string_env: str = CONNECTION_STRING_ENV  # the variable's name, never its value
    max_concurrency: int = 4

    @classmethod
    def from_url(cls, url: str) -> "AzureBlobStore":
        """The store ``BSCORE_BLOB_URL`` names.

        Parameters
        ----------
        url : str
            ``az://<container>[/<prefix>]`` (connection string from the environment) or
            ``https://<account>.blob.core.windows.net/<container>[/<prefix>]`` (``DefaultAzureCredential``).

        Returns
        -------
        AzureBlobStore
        """
        parts = urlsplit(url)
        if parts.query or parts.fragment:
            raise ValueError("BSCORE_BLOB_URL must not carry a query string (put SAS tokens and keys in "
                             f"{CONNECTION_STRING_ENV})")
        if parts.scheme == "az":
            container, path = parts.netloc, parts.path
            account_url = None
        elif parts.scheme == "https":
            container, _, path = parts.path.lstrip("/").partition("/")
            account_url = f"https://{parts.netloc}"
        else:
            raise ValueError(f"blob URL scheme {parts.scheme!r} is not az:// or https://")
        if not container:
            raise ValueError("the blob URL names no container: az://<container>[/<prefix>]")
        prefix = path.strip("/")
        return cls(container=container, prefix=f"{prefix}/" if prefix else "", account_url=account_url)

    @property
    def _client(self) -> ContainerClient:
        return container_client(self.container, self.account_url, self.connection_string_env)

    def _name(self, key: str) -> str:
        parts = [part for part in key.split("/") if part]
        if not parts or any(part in (".", "..") for part in parts):
            raise ValueError(f"blob key {key!r} is not a relative path")
        return self.prefix + "/".join(parts)

    def write_bytes(self, key: str, data: bytes) -> None:
        # A blob is replaced atomically: a small payload is one Put Blob, a large one is
        # uploaded as uncommitted blocks that become visible together with one Put Block List,
        # so readers see the old blob or the new one, never a partial one.
        client = self._client
        with unreachable_as_connection_error(client):
            client.upload_blob(self._name(key), data, overwrite=True, max_concurrency=self.max_concurrency)

    def read_bytes(self, key: str) -> bytes:
        client = self._client
        try:
            with unreachable_as_connection_error(client):
                return client.download_blob(self._name(key), max_concurrency=self.max_concurrency).readall()
        except ResourceNotFoundError:
            raise FileNotFoundError(f"blob {key!r} does not exist in {self.describe()}") from None

    def exists(self, key: str) -> bool:
        client = self._client
        with unreachable_as_connection_error(client):
            return client.get_blob_client(self._name(key)).exists()

    def list(self, prefix: str) -> list[str]:
        client = self._client
        with unreachable_as_connection_error(client):
            names = list(client.list_blob_names(name_starts_with=self.prefix + prefix.lstrip("/")))
        return sorted(name[len(self.prefix):] for name in names)

    def sizes(self, prefix: str) -> dict[str, int]:
        client = self._client
        with unreachable_as_connection_error(client):
            blobs = list(client.list_blobs(name_starts_with=self.prefix + prefix.lstrip("/")))
        return {blob.name[len(self.prefix):]: int(blob.size) for blob in sorted(blobs, key=lambda b: b.name)}

    def delete(self, key: str) -> None:
        client = self._client
        try:
            with unreachable_as_connection_error(client):
                client.delete_blob(self._name(key))
        except ResourceNotFoundError:
            pass

    def describe(self) -> str:
        client = self._client
        where = f"az://{self.container}/{self.prefix}"
        return f"{where} (account {client.account_name} at {client.primary_hostname})"
