"""Blob storage: a folder on disk by default, Azure Blob Storage in the cloud.

Paths are ``/``-separated keys relative to the store's root (``raw/2026-01-01T00/part-1.parquet``).
Every write is atomic: a reader sees the old object or the new one, never a partial one.
"""

from __future__ import annotations

import os
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path

import dagster as dg
import pandas as pd

from scoring.parquet import from_parquet_bytes, to_parquet_bytes


class BlobStore(dg.ConfigurableResource, ABC):
    """Atomic object storage addressed by ``/``-separated keys."""

    @abstractmethod
    def write_bytes(self, key: str, data: bytes) -> None: ...

    @abstractmethod
    def read_bytes(self, key: str) -> bytes: ...

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def list(self, prefix: str) -> list[str]:
        """Keys under ``prefix`` (recursively), sorted."""

    @abstractmethod
    def delete(self, key: str) -> None: ...

    @abstractmethod
    def describe(self) -> str:
        """Where the store lives, for people (no secrets)."""

    def sizes(self, prefix: str) -> dict[str, int]:
        """Keys under ``prefix`` with their sizes in bytes (what retention reports it would free);
        stores override this with their listing's sizes, this fallback reads each blob."""
        return {key: len(self.read_bytes(key)) for key in self.list(prefix)}

    def write_parquet(self, key: str, frame: pd.DataFrame) -> None:
        self.write_bytes(key, to_parquet_bytes(frame))

    def read_parquet(self, key: str) -> pd.DataFrame:
        return from_parquet_bytes(self.read_bytes(key))


class LocalBlobStore(BlobStore):
    """Blobs as files under ``root``; writes go to a temporary file renamed into place."""

    root: str

    def _path(self, key: str) -> Path:
        parts = [part for part in key.split("/") if part]
        if not parts or any(part in (".", "..") for part in parts):
            raise ValueError(f"blob key {key!r} is not a relative path")
        return Path(self.root, *parts)

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
        path = self._path(key)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise FileNotFoundError(f"blob {key!r} does not exist in {self.root}") from None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str) -> list[str]:
        root = Path(self.root)
        base = root / prefix.strip("/") if prefix.strip("/") else root
        start = base if base.is_dir() else base.parent
        if not start.is_dir():
            return []
        keys = []
        for dirpath, _, filenames in os.walk(start):
            for name in filenames:
                if name.startswith("."):
                    continue  # in-flight temporary files
                key = Path(dirpath, name).relative_to(root).as_posix()
                if key.startswith(prefix.lstrip("/")):
                    keys.append(key)
        return sorted(keys)

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def sizes(self, prefix: str) -> dict[str, int]:
        sizes = {}
        for key in self.list(prefix):
            try:
                sizes[key] = self._path(key).stat().st_size
            except FileNotFoundError:  # removed since the listing
                continue
        return sizes

    def describe(self) -> str:
        return str(Path(self.root).resolve())
