"""Versioned model bundles in blob storage.

Layout: ``models/<device>/<version>/params.npz`` and ``.../bundle.json``, written in that
order (the metadata is the commit marker), then ``models/<device>/current.json`` names the
current version. Works on any store with ``read_bytes``, ``write_bytes``, ``exists`` and
``list`` (the project's blob resources, or a bare Azure container client wrapper).
"""

from __future__ import annotations

import json
from typing import Protocol

from scoring.model_format import ModelBundle, ModelFormatError, bundle_from_files, bundle_to_files

PREFIX = "models"


class Blobs(Protocol):
    def read_bytes(self, key: str) -> bytes: ...
    def write_bytes(self, key: str, data: bytes) -> None: ...
    def exists(self, key: str) -> bool: ...
    def list(self, prefix: str) -> list[str]: ...


def save_bundle(blobs: Blobs, bundle: ModelBundle, make_current: bool = True) -> str:
    """Store a bundle under its version; optionally register it as the device's current one."""
    files = bundle_to_files(bundle)
    base = f"{PREFIX}/{bundle.device}/{bundle.version}"
    blobs.write_bytes(f"{base}/params.npz", files["params.npz"])
    blobs.write_bytes(f"{base}/bundle.json", files["bundle.json"])
    if make_current:
        blobs.write_bytes(f"{PREFIX}/{bundle.device}/current.json", json.dumps({"version": bundle.version}).encode())
    return base


def current_version(blobs: Blobs, device: str) -> str | None:
    key = f"{PREFIX}/{device}/current.json"
    if not blobs.exists(key):
        return None
    try:
        return str(json.loads(blobs.read_bytes(key))["version"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelFormatError(f"{key} does not name a version: {type(exc).__name__}: {exc}") from None


def load_bundle(blobs: Blobs, device: str, version: str) -> ModelBundle:
    base = f"{PREFIX}/{device}/{version}"
    return bundle_from_files(blobs.read_bytes(f"{base}/params.npz"), blobs.read_bytes(f"{base}/bundle.json"))


def load_current_bundles(blobs: Blobs, devices) -> dict[str, ModelBundle]:
    """The current bundle of each device that has one."""
    bundles = {}
    for device in devices:
        version = current_version(blobs, device)
        if version is not None:
            bundles[device] = load_bundle(blobs, device, version)
    return bundles


def load_current_bundles_or_refusals(blobs: Blobs, devices) -> tuple[dict[str, ModelBundle], dict[str, str]]:
    """Like ``load_current_bundles``, but a bundle that fails its checks (a hash that does not
    match, a malformed file) is refused and its reason returned, so the rest can still be used."""
    bundles, refused = {}, {}
    for device in devices:
        try:
            version = current_version(blobs, device)
            if version is not None:
                bundles[device] = load_bundle(blobs, device, version)
        except ModelFormatError as exc:
            refused[device] = str(exc)
    return bundles, refused


def devices_with_models(blobs: Blobs) -> list[str]:
    return sorted({key.split("/")[1] for key in blobs.list(f"{PREFIX}/") if key.endswith("/current.json")})


def make_current(blobs: Blobs, device: str, version: str) -> None:
    """Register a stored version as the device's current one."""
    blobs.write_bytes(f"{PREFIX}/{device}/current.json", json.dumps({"version": version}).encode())
