"""The blob store resource on Azure Blob Storage, the cloud twin of ``LocalBlobStore``.

A thin Dagster resource over ``scoring.azure_storage`` (``ContainerBlobs`` and the one client
builder, with its retry policy and secret-safe errors). Its config holds the container, prefix
and account, and the *name* of the variable holding the connection string, never a secret.
"""

from __future__ import annotations

from resources.blob import BlobStore
from scoring.azure_storage import CONNECTION_STRING_ENV, ContainerBlobs, container_client, parse_blob_url


class AzureBlobStore(BlobStore):
    """Blobs in one container, under an optional key prefix."""

    container: str
    prefix: str = ""
    account_url: str | None = None
    connection_string_env: str = CONNECTION_STRING_ENV  # the variable's name, never its value
    max_concurrency: int = 4

    @classmethod
    def from_url(cls, url: str) -> "AzureBlobStore":
        """The store ``BSCORE_BLOB_URL`` names (``scoring.azure_storage.parse_blob_url``).

        Parameters
        ----------
        url : str
            ``az://<container>[/<prefix>]`` (connection string from the environment) or
            ``https://<account>.blob.core.windows.net/<container>[/<prefix>]`` (``DefaultAzureCredential``).

        Returns
        -------
        AzureBlobStore
        """
        container, prefix, account_url = parse_blob_url(url)
        return cls(container=container, prefix=prefix, account_url=account_url)

    def blobs(self) -> ContainerBlobs:
        client = container_client(self.container, self.account_url, self.connection_string_env)
        return ContainerBlobs(client, self.prefix, self.max_concurrency)
