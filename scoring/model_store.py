"""Versioned model bundles in blob storage.

Layout: ``models/<device>/<version>/params.npz`` and ``.../bundle.json``, written in that
order (the metadata is the commit marker), then ``models/<device>/current.json`` names the
current version. Works on any store with ``read_bytes``, ``write_bytes``, ``exists`` and
``list`` (the project's blob resources, or a bare Azure container client wrapper).

A scoring run loads many devices' bundles at once: one listing of ``models/`` says which
devices have a current version and which files exist, then the bundles are read
concurrently. A device whose ``current.json`` or bundle is damaged, missing or invalid is
refused with its reason; only an outage of the store itself fails the whole load.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from scoring.blob_layout import (
    MODELS_PREFIX,
    current_version_key,
    device_of_current_key,
    model_version_prefix,
)
from scoring.blobs import Blobs
from scoring.model_format import ModelBundle, ModelFormatError, bundle_from_files, bundle_to_files

READ_THREADS = 16  # blob reads in flight while loading bundles: the reads wait on the store, not the CPU


def save_bundle(blobs: Blobs, bundle: ModelBundle, make_current: bool = True) -> str:
    """Store a bundle under its version; optionally register it as the device's current one."""
    files = bundle_to_files(bundle)
    base = model_version_prefix(bundle.device, bundle.version)
    blobs.write_bytes(f"{base}/params.npz", files["params.npz"])
    blobs.write_bytes(f"{base}/bundle.json", files["bundle.json"])
    if make_current:
        blobs.write_bytes(current_version_key(bundle.device), json.dumps({"version": bundle.version}).encode())
    return base


def _version_of(key: str, data: bytes) -> str:
    """The version a ``current.json`` names."""
    try:
        version = json.loads(data)["version"]
    except (ValueError, KeyError, TypeError) as exc:  # ValueError covers bad JSON and bad UTF-8
        raise ModelFormatError(f"{key} does not name a version: {type(exc).__name__}: {exc}") from None
    if not isinstance(version, str) or not version or "/" in version or version in (".", ".."):
        raise ModelFormatError(f"{key} does not name a version: {version!r}")
    return version


def current_version(blobs: Blobs, device: str) -> str | None:
    key = current_version_key(device)
    if not blobs.exists(key):
        return None
    return _version_of(key, blobs.read_bytes(key))


def load_bundle(blobs: Blobs, device: str, version: str) -> ModelBundle:
    base = model_version_prefix(device, version)
    return bundle_from_files(blobs.read_bytes(f"{base}/params.npz"), blobs.read_bytes(f"{base}/bundle.json"))


def load_current_bundles(blobs: Blobs, devices) -> dict[str, ModelBundle]:
    """The current bundle of each device that has one; any refused bundle raises ``ModelFormatError``.

    Callers that must keep going when one device's bundle is bad use
    ``load_current_bundles_or_refusals``.
    """
    bundles, refused = load_current_bundles_or_refusals(blobs, devices)
    if refused:
        device, reason = next(iter(sorted(refused.items())))
        raise ModelFormatError(f"device {device}: {reason}" + (f" (and {len(refused) - 1} more)" if len(refused) > 1 else ""))
    return bundles


def load_current_bundles_or_refusals(blobs: Blobs, devices, threads: int = READ_THREADS
                                     ) -> tuple[dict[str, ModelBundle], dict[str, str]]:
    """The current bundle of each device that has one, and the reason for each refused.

    One listing of ``models/`` finds the devices with a ``current.json`` and the files that
    exist; the devices' bundles are then read on ``threads`` threads.

    Parameters
    ----------
    blobs : Blobs
        The model store.
    devices : iterable of str
        The devices to load; those without ``current.json`` have no model and are in neither result.
    threads : int
        Concurrent reads.

    Returns
    -------
    (dict, dict)
        Device to its current ``ModelBundle``; device to why its model was refused: a
        ``current.json`` that names no version or a version without both files, a bundle
        that fails its hash or its parameters' checks, or that names another device.

    Raises
    ------
    Exception
        Only what the store raises when it cannot be reached (an outage is not a device's fault).
    """
    keys = set(blobs.list(MODELS_PREFIX))
    wanted = [str(device) for device in dict.fromkeys(devices) if current_version_key(str(device)) in keys]

    def load(device: str) -> ModelBundle | str:
        try:
            return _load_current(blobs, keys, device)
        except ModelFormatError as exc:
            return str(exc)
        except FileNotFoundError as exc:  # removed between the listing and the read
            return f"{type(exc).__name__}: {exc}"

    if len(wanted) > 1 and threads > 1:
        with ThreadPoolExecutor(min(threads, len(wanted))) as pool:
            loaded = list(pool.map(load, wanted))
    else:
        loaded = [load(device) for device in wanted]
    bundles = {d: b for d, b in zip(wanted, loaded) if isinstance(b, ModelBundle)}
    refused = {d: b for d, b in zip(wanted, loaded) if isinstance(b, str)}
    return bundles, refused


def _load_current(blobs: Blobs, keys: set[str], device: str) -> ModelBundle:
    """Read and check one device's current bundle; what is wrong with it raises ``ModelFormatError``."""
    key = current_version_key(device)
    version = _version_of(key, blobs.read_bytes(key))
    base = model_version_prefix(device, version)
    absent = [name for name in ("params.npz", "bundle.json") if f"{base}/{name}" not in keys]
    if absent:
        raise ModelFormatError(f"{key} names version {version}, which has no {' or '.join(absent)}")
    bundle = bundle_from_files(blobs.read_bytes(f"{base}/params.npz"), blobs.read_bytes(f"{base}/bundle.json"))
    if bundle.device != device or bundle.version != version:
        raise ModelFormatError(f"{base}/bundle.json is the bundle of device {bundle.device!r} version "
                               f"{bundle.version!r}, not of device {device!r} version {version!r}")
    return bundle


def current_versions(blobs: Blobs, threads: int = READ_THREADS) -> dict[str, str]:
    """Every device's current version, from one listing and concurrent reads of the
    ``current.json`` files; a device whose file names no version maps to the reason."""
    keys = sorted(key for key in blobs.list(MODELS_PREFIX) if device_of_current_key(key) is not None)

    def read(key: str) -> str:
        try:
            return _version_of(key, blobs.read_bytes(key))
        except (ModelFormatError, FileNotFoundError) as exc:
            return f"refused: {exc}"

    with ThreadPoolExecutor(max(1, min(threads, len(keys)))) as pool:
        return {device_of_current_key(key): version for key, version in zip(keys, pool.map(read, keys))}


def devices_with_models(blobs: Blobs) -> list[str]:
    found = (device_of_current_key(key) for key in blobs.list(MODELS_PREFIX))
    return sorted({device for device in found if device is not None})


def make_current(blobs: Blobs, device: str, version: str) -> None:
    """Register a stored version as the device's current one."""
    blobs.write_bytes(current_version_key(device), json.dumps({"version": version}).encode())
