"""Blob storage without Dagster: the one protocol every reader and writer of blobs uses.

Keys are ``/``-separated paths relative to the store's root (``raw/2026-01-01T00/part-1.parquet``);
where each domain's keys lie is ``scoring.blob_layout``. Every write is atomic: a reader sees the
old object or the new one, never a partial one. Two implementations: ``FolderBlobs`` (a folder
on disk, the local default) and ``scoring.azure_storage.ContainerBlobs`` (an Azure Blob Storage
container). ``open_blobs`` chooses one from ``BSCORE_BLOB_URL``'s value; the Dagster resources
(``resources/blob.py``) and the Azure ML job (``scoring/entrypoint.py``) both open blobs here.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Protocol, runtime_checkable


@runtime_checkable
class Blobs(Protocol):
    """Atomic object storage addressed by ``/``-separated keys."""

    def read_bytes(self, key: str) -> bytes:
        """The blob's content; a missing blob raises ``FileNotFoundError`` naming the key."""

    def write_bytes(self, key: str, data: bytes) -> None:
        """Replace the blob whole (readers never see part of it)."""

    def exists(self, key: str) -> bool: ...

    def list(self, prefix: str) -> list[str]:
        """Keys under ``prefix`` (recursively), sorted."""

    def delete(self, key: str) -> None:
        """Remove the blob; a missing one is not an error."""

    def describe(self) -> str:
        """Where the store lives, for people (never a secret)."""


def key_parts(key: str) -> list[str]:
    """A key's path segments; a key that is empty or climbs out of the root raises ``ValueError``."""
    parts = [part for part in key.split("/") if part]
    if not parts or any(part in (".", "..") for part in parts):
        raise ValueError(f"blob key {key!r} is not a relative path")
    return parts


class FolderBlobs:
    """Blobs as files under ``root``; a write goes to a temporary file renamed into place."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*key_parts(key))

    def write_bytes(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def read_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise FileNotFoundError(f"blob {key!r} does not exist in {self.root}") from None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str) -> list[str]:
        base = self.root / prefix.strip("/") if prefix.strip("/") else self.root
        start = base if base.is_dir() else base.parent
        if not start.is_dir():
            return []
        keys = []
        for dirpath, _, filenames in os.walk(start):
            for name in filenames:
                if name.startswith("."):
                    continue  # in-flight temporary files
                key = Path(dirpath, name).relative_to(self.root).as_posix()
                if key.startswith(prefix.lstrip("/")):
                    keys.append(key)
        return sorted(keys)

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def sizes(self, prefix: str) -> dict[str, int]:
        """Keys under ``prefix`` with their sizes in bytes."""
        sizes = {}
        for key in self.list(prefix):
            try:
                sizes[key] = self._path(key).stat().st_size
            except FileNotFoundError:  # removed since the listing
                continue
        return sizes

    def describe(self) -> str:
        return str(self.root.resolve())


def is_blob_url(url_or_folder: str) -> bool:
    """Whether ``BSCORE_BLOB_URL``'s value names Azure Blob Storage rather than a folder."""
    return "://" in str(url_or_folder)


def open_blobs(url_or_folder: str | os.PathLike, credential=None) -> Blobs:
    """The store ``BSCORE_BLOB_URL`` names.

    Parameters
    ----------
    url_or_folder : str or path
        ``az://<container>[/<prefix>]`` (connection string from ``AZURE_STORAGE_CONNECTION_STRING``),
        ``https://<account>.blob.core.windows.net/<container>[/<prefix>]`` (``credential``), or a folder.
    credential : optional
        For an account URL: the token credential to sign in with; default
        ``scoring.azure_storage.azure_credential()``.

    Returns
    -------
    Blobs
        A ``ContainerBlobs`` for a URL, a ``FolderBlobs`` for a folder.
    """
    if is_blob_url(str(url_or_folder)):
        from scoring.azure_storage import ContainerBlobs  # the Azure SDK only where a URL asks for it

        return ContainerBlobs.from_url(str(url_or_folder), credential=credential)
    return FolderBlobs(url_or_folder)
