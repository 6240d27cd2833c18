"""The blob store resource: a folder on disk by default, Azure Blob Storage in the cloud.

A thin Dagster resource over ``scoring.blobs`` (the one ``Blobs`` protocol and its folder
implementation), so that assets, the CLI and the Azure ML job read and write the same keys
through the same code. Keys and atomicity are ``scoring.blobs``'; where each domain's keys lie
is ``scoring.blob_layout``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import dagster as dg
import pandas as pd

from scoring.blobs import Blobs, FolderBlobs
from scoring.parquet import from_parquet_bytes, to_parquet_bytes


class BlobStore(dg.ConfigurableResource, ABC):
    """Atomic object storage addressed by ``/``-separated keys (``scoring.blobs.Blobs``)."""

    @abstractmethod
    def blobs(self) -> Blobs:
        """The store itself, without Dagster."""

    def write_bytes(self, key: str, data: bytes) -> None:
        self.blobs().write_bytes(key, data)

    def read_bytes(self, key: str) -> bytes:
        return self.blobs().read_bytes(key)

    def exists(self, key: str) -> bool:
        return self.blobs().exists(key)

    def list(self, prefix: str) -> list[str]:
        """Keys under ``prefix`` (recursively), sorted."""
        return self.blobs().list(prefix)

    def delete(self, key: str) -> None:
        self.blobs().delete(key)

    def describe(self) -> str:
        """Where the store lives, for people (no secrets)."""
        return self.blobs().describe()

    def sizes(self, prefix: str) -> dict[str, int]:
        """Keys under ``prefix`` with their sizes in bytes (what retention reports it would free):
        from the listing where the store gives them, else by reading each blob."""
        blobs = self.blobs()
        if hasattr(blobs, "sizes"):
            return blobs.sizes(prefix)
        return {key: len(blobs.read_bytes(key)) for key in blobs.list(prefix)}

    def write_parquet(self, key: str, frame: pd.DataFrame) -> None:
        self.write_bytes(key, to_parquet_bytes(frame))

    def read_parquet(self, key: str) -> pd.DataFrame:
        return from_parquet_bytes(self.read_bytes(key))


class LocalBlobStore(BlobStore):
    """Blobs as files under ``root`` (``scoring.blobs.FolderBlobs``)."""

    root: str

    def blobs(self) -> FolderBlobs:
        return FolderBlobs(self.root)
