"""Azure Blob Storage: the one place that builds Azure storage clients and credentials.

``BSCORE_BLOB_URL=az://<container>[/<prefix>]`` signs in with the connection string in
``AZURE_STORAGE_CONNECTION_STRING``; ``https://<account>.blob.core.windows.net/<container>[/<prefix>]``
with ``azure_credential()`` (``DefaultAzureCredential``: a managed identity, ``az login``, ...).
Secrets are read from the environment when a client is built, so they never sit in resource
config, the UI or logs, and errors name the host only: the SDK's own messages may quote a
request URL carrying a SAS token, so they are not repeated. Every client gets the same retry
policy (``CLIENT_OPTIONS``). The Dagster resources (``resources/azure_blob.py``), the event
hub's checkpoints, the Azure ML backend and the Azure ML job all build their clients here.
"""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from typing import NamedTuple
from urllib.parse import urlsplit

from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.storage.blob import BlobServiceClient, ContainerClient, ExponentialRetry

from scoring.blobs import key_parts

CONNECTION_STRING_ENV = "AZURE_STORAGE_CONNECTION_STRING"
MANAGED_IDENTITY_ENV = "DEFAULT_IDENTITY_CLIENT_ID"  # Azure ML names a cluster's user-assigned identity here
RETRIES = 2
# The SDK's default waits 15 s, 18 s and 24 s between attempts, hiding an outage inside one
# call for about a minute. Give up after a few seconds instead and let the run's retry
# policy (bscore_assets/retries.py) retry the whole step, where the UI shows it.
CLIENT_OPTIONS = {"retry_policy": ExponentialRetry(initial_backoff=1, increment_base=2, retry_total=RETRIES),
                  "connection_timeout": 10}


class BlobUrl(NamedTuple):
    """What a blob URL names: a container, a key prefix (``""`` or ending in ``/``), and the
    account URL for ``DefaultAzureCredential`` (None: the connection string in the environment)."""

    container: str
    prefix: str
    account_url: str | None


def parse_blob_url(url: str) -> BlobUrl:
    """The container, prefix and account of ``az://<container>[/<prefix>]`` or
    ``https://<account>.blob.core.windows.net/<container>[/<prefix>]``; anything else, or a URL
    carrying a query string (where SAS tokens travel), raises ``ValueError``."""
    parts = urlsplit(url)
    if parts.query or parts.fragment:
        raise ValueError("BSCORE_BLOB_URL must not carry a query string (put SAS tokens and keys in "
                         f"{CONNECTION_STRING_ENV})")
    if parts.scheme == "az":
        container, path, account_url = parts.netloc, parts.path, None
    elif parts.scheme == "https":
        container, _, path = parts.path.lstrip("/").partition("/")
        account_url = f"https://{parts.netloc}"
    else:
        raise ValueError(f"blob URL scheme {parts.scheme!r} is not az:// or https://")
    if not container:
        raise ValueError("the blob URL names no container: az://<container>[/<prefix>]")
    prefix = path.strip("/")
    return BlobUrl(container, f"{prefix}/" if prefix else "", account_url)


def azure_credential():
    """The process's Azure identity: ``DefaultAzureCredential``, on an Azure ML cluster with the
    user-assigned identity Azure ML names in ``DEFAULT_IDENTITY_CLIENT_ID``."""
    from azure.identity import DefaultAzureCredential

    client_id = os.environ.get(MANAGED_IDENTITY_ENV)
    return DefaultAzureCredential(managed_identity_client_id=client_id) if client_id else DefaultAzureCredential()


def connection_string(variable: str = CONNECTION_STRING_ENV) -> str:
    """The storage connection string in the environment variable ``variable``; unset raises
    ``ValueError`` naming the variable (never a value)."""
    value = os.environ.get(variable)
    if not value:
        raise ValueError(f"set {variable} (a storage connection string) or use an account URL")
    return value


_containers: dict[tuple, ContainerClient] = {}
_containers_lock = threading.Lock()


def container_client(container: str, account_url: str | None = None,
                     connection_string_env: str = CONNECTION_STRING_ENV, credential=None) -> ContainerClient:
    """A client of ``container``, created if missing, shared by every caller in the process.

    Parameters
    ----------
    container : str
        Container name.
    account_url : str, optional
        ``https://<account>.blob.core.windows.net``; signs in with ``credential`` (default
        ``azure_credential()``). Without it, the connection string in ``connection_string_env``.
    connection_string_env : str
        Name of the environment variable holding the connection string.
    credential : optional
        A token credential for ``account_url``.

    Returns
    -------
    ContainerClient
        With ``CLIENT_OPTIONS``' retry policy; an unreachable service raises ``ConnectionError``.
    """
    secret = None if account_url else connection_string(connection_string_env)
    key = ("url", account_url, container, id(credential)) if account_url else ("env", secret, container)
    with _containers_lock:
        client = _containers.get(key)
        if client is None:
            if account_url:
                client = ContainerClient(account_url, container, credential=credential or azure_credential(),
                                         **CLIENT_OPTIONS)
            else:
                client = ContainerClient.from_connection_string(secret, container, **CLIENT_OPTIONS)
            with secret_safe_errors(client.primary_hostname):
                try:
                    client.create_container()
                except ResourceExistsError:
                    pass
            _containers[key] = client
        return client


def service_client(account_url: str | None = None, connection_string: str | None = None,
                   credential=None) -> BlobServiceClient:
    """A client of a whole storage account (Dagster Pipes' context and messages): by
    ``connection_string`` when given, else ``account_url`` signed in with ``credential``
    (default ``azure_credential()``); the same retry policy as the containers'."""
    if connection_string:
        return BlobServiceClient.from_connection_string(connection_string, **CLIENT_OPTIONS)
    if not account_url:
        raise ValueError(f"set {CONNECTION_STRING_ENV} (a storage connection string) or an account URL")
    return BlobServiceClient(account_url, credential=credential or azure_credential(), **CLIENT_OPTIONS)


@contextmanager
def secret_safe_errors(host: str):
    """A service that cannot be reached raises ``ConnectionError`` (an outage: the run's retry
    policy retries it), one that refuses the credential ``PermissionError`` (retrying would not
    help); either names the host and nothing the SDK said (it may quote a SAS token)."""
    try:
        yield
    except (ServiceRequestError, ServiceResponseError) as exc:
        raise ConnectionError(f"Blob Storage at {host} is unreachable ({type(exc).__name__} after "
                              f"{RETRIES} retries)") from None
    except HttpResponseError as exc:
        if not isinstance(exc, ClientAuthenticationError) and exc.status_code not in (401, 403):
            raise
        raise PermissionError(f"Blob Storage at {host} refused the credential (HTTP {exc.status_code}: check "
                              f"{CONNECTION_STRING_ENV} or the identity's role)") from None


class ContainerBlobs:
    """The ``Blobs`` protocol (``scoring.blobs``) on one container, under a key prefix.

    Parameters
    ----------
    client : ContainerClient
        From ``container_client`` (or any container client, as tests build).
    prefix : str
        Keys live under it (``""`` for the container's root).
    max_concurrency : int
        Connections per upload or download of one blob.
    """

    def __init__(self, client: ContainerClient, prefix: str = "", max_concurrency: int = 4):
        self.client = client
        self.prefix = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
        self.max_concurrency = max_concurrency

    @classmethod
    def from_url(cls, url: str, credential=None, max_concurrency: int = 4) -> "ContainerBlobs":
        """The container and prefix a blob URL names (``parse_blob_url``)."""
        container, prefix, account_url = parse_blob_url(url)
        return cls(container_client(container, account_url, credential=credential), prefix, max_concurrency)

    def _name(self, key: str) -> str:
        return self.prefix + "/".join(key_parts(key))

    def _safe(self):
        return secret_safe_errors(self.client.primary_hostname)

    def write_bytes(self, key: str, data: bytes) -> None:
        # A blob is replaced atomically: a small payload is one Put Blob, a large one is
        # uploaded as uncommitted blocks that become visible together with one Put Block List,
        # so readers see the old blob or the new one, never a partial one.
        with self._safe():
            self.client.upload_blob(self._name(key), data, overwrite=True, max_concurrency=self.max_concurrency)

    def read_bytes(self, key: str) -> bytes:
        try:
            with self._safe():
                return self.client.download_blob(self._name(key), max_concurrency=self.max_concurrency).readall()
        except ResourceNotFoundError:
            raise FileNotFoundError(f"blob {key!r} does not exist in {self.describe()}") from None

    def exists(self, key: str) -> bool:
        with self._safe():
            return self.client.get_blob_client(self._name(key)).exists()

    def list(self, prefix: str) -> list[str]:
        with self._safe():
            names = list(self.client.list_blob_names(name_starts_with=self.prefix + prefix.lstrip("/")))
        return sorted(name[len(self.prefix):] for name in names)

    def sizes(self, prefix: str) -> dict[str, int]:
        """Keys under ``prefix`` with their sizes in bytes, from the listing."""
        with self._safe():
            blobs = list(self.client.list_blobs(name_starts_with=self.prefix + prefix.lstrip("/")))
        return {blob.name[len(self.prefix):]: int(blob.size) for blob in sorted(blobs, key=lambda b: b.name)}

    def delete(self, key: str) -> None:
        try:
            with self._safe():
                self.client.delete_blob(self._name(key))
        except ResourceNotFoundError:
            pass

    def describe(self) -> str:
        return (f"az://{self.client.container_name}/{self.prefix} "
                f"(account {self.client.account_name} at {self.client.primary_hostname})")
