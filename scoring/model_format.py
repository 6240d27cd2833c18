"""Model bundles: one device's fitted models, one per sensor, in a safe, portable format.

A bundle is stored as two files: ``params.npz`` (plain arrays only, read without pickle) and
``bundle.json`` (each model's kind, its spec and metadata — scikit-learn version, training
range, sample count, threshold and content hash — and the SHA-256 of the arrays file). Each
model's arrays and spec come from its kind (``scoring.detectors``); loading runs no code,
validates every model where it is built, and refuses arrays whose hashes do not match the
metadata. The ground rules (errors, limits, checked archive readers) are ``scoring.safe_format``.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from scoring.detectors import KINDS, kind_of, multivariate
from scoring.detectors.svm import KERNELS, MAX_POLY_DEGREE, MAX_SUPPORT_VECTORS, SensorModel
from scoring.safe_format import (MAX_ARCHIVE_MEMBERS, MAX_MODEL_FILE_BYTES, MAX_UNPACKED_BYTES, METADATA_KEYS,
                                 ModelFormatError, check_archive, content_hash, model_metadata, read_npz)

FORMAT_VERSION = 1
_sha256 = content_hash  # the name older callers use

__all__ = ["FORMAT_VERSION", "KERNELS", "MAX_ARCHIVE_MEMBERS", "MAX_MODEL_FILE_BYTES", "MAX_POLY_DEGREE",
           "MAX_SUPPORT_VECTORS", "MAX_UNPACKED_BYTES", "METADATA_KEYS", "ModelBundle", "ModelFormatError",
           "SensorModel", "bundle_from_files", "bundle_to_files", "check_archive", "model_metadata",
           "versioned_bundle"]


@dataclass(frozen=True)
class ModelBundle:
    """One device's models, one per sensor, under one version (each a model of a ``scoring.detectors`` kind),
    and optionally a model over the device's sensors together (``scoring.detectors.multivariate``)."""

    device: str
    version: str
    models: dict
    metadata: dict = field(default_factory=dict)
    device_model: multivariate.DeviceModel | None = None


DEVICE_PREFIX = "@device"  # the device model's arrays: "@device/<name>" in params.npz


def _model_entry(sensor: str, model) -> tuple[dict[str, np.ndarray], dict]:
    """Arrays (keyed ``<sensor>/<name>``) and JSON spec of one model."""
    try:
        kind = kind_of(model)
    except ValueError as exc:
        raise ModelFormatError(f"sensor {sensor}: {exc}") from None
    own, spec = kind.to_entry(model)
    arrays = {f"{sensor}/{name}": array for name, array in own.items()}
    return arrays, {"type": kind.name, **spec, "sha256": content_hash(list(arrays.values())),
                    "metadata": model.metadata}


def bundle_to_files(bundle: ModelBundle) -> dict[str, bytes]:
    """Serialize a bundle to ``{"params.npz": ..., "bundle.json": ...}``."""
    arrays, sensors = {}, {}
    for sensor, model in sorted(bundle.models.items()):
        model_arrays, sensors[sensor] = _model_entry(sensor, model)
        arrays.update(model_arrays)
    device_spec = None
    if bundle.device_model is not None:
        if DEVICE_PREFIX in bundle.models:
            raise ModelFormatError(f"sensor id {DEVICE_PREFIX!r} is reserved for the device model")
        own, device_spec = multivariate.to_entry(bundle.device_model)
        device_arrays = {f"{DEVICE_PREFIX}/{name}": array for name, array in own.items()}
        device_spec = {**device_spec, "sha256": content_hash(list(device_arrays.values())),
                       "metadata": bundle.device_model.metadata}
        arrays.update(device_arrays)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    params = buffer.getvalue()
    meta = {
        "format": FORMAT_VERSION,
        "device": bundle.device,
        "version": bundle.version,
        "params_sha256": hashlib.sha256(params).hexdigest(),
        "sensors": sensors,
        "metadata": bundle.metadata,
        **({"device_model": device_spec} if device_spec is not None else {}),
    }
    return {"params.npz": params, "bundle.json": json.dumps(meta, indent=1, sort_keys=True).encode()}


def versioned_bundle(device: str, models: dict, metadata: dict, prefix: str = "",
                     device_model: multivariate.DeviceModel | None = None) -> ModelBundle:
    """A bundle whose version names when it was made and what it holds: ``<prefix><UTC time>-<hash>``."""
    draft = ModelBundle(device, "draft", models, metadata, device_model)
    digest = hashlib.sha256(bundle_to_files(draft)["params.npz"]).hexdigest()[:10]
    stamp = pd.Timestamp.now("UTC").strftime("%Y%m%dT%H%M%S")
    return ModelBundle(device, f"{prefix}{stamp}-{digest}", models, metadata, device_model)


def bundle_from_files(params: bytes, meta_json: bytes) -> ModelBundle:
    """Load a bundle; refuse it if the arrays do not hash to what the metadata says.

    Anything malformed (a broken archive, missing keys, arrays claiming more data than the
    file holds) is refused with ``ModelFormatError``: a bad file never crashes its reader.
    """
    try:
        return _bundle_from_files(params, meta_json)
    except ModelFormatError:
        raise
    except Exception as exc:
        raise ModelFormatError(f"bundle is malformed: {type(exc).__name__}: {str(exc)[:300]}") from None


def _bundle_from_files(params: bytes, meta_json: bytes) -> ModelBundle:
    try:
        meta = json.loads(meta_json)
    except json.JSONDecodeError as exc:
        raise ModelFormatError(f"bundle.json is not JSON: {exc}") from None
    if meta.get("format") != FORMAT_VERSION:
        raise ModelFormatError(f"bundle format {meta.get('format')!r} is not {FORMAT_VERSION}")
    name = f"bundle {meta.get('device')}/{meta.get('version')}"
    digest = hashlib.sha256(params).hexdigest()
    if digest != meta.get("params_sha256"):
        raise ModelFormatError(f"{name}: params.npz hashes to {digest}, metadata says {meta.get('params_sha256')}")
    arrays = read_npz(f"{name} params.npz", params)
    models = {}
    for sensor, spec in meta["sensors"].items():
        own = [arrays[key] for key in arrays if key.rsplit("/", 1)[0] == sensor]
        if "sha256" in spec and content_hash(own) != spec["sha256"]:
            raise ModelFormatError(f"{name}: sensor {sensor}'s arrays do not match their content hash")
        models[sensor] = _model_from_spec(name, sensor, spec, arrays)
    device_model = _device_model_from_spec(name, meta["device_model"], arrays) if "device_model" in meta else None
    return ModelBundle(meta["device"], meta["version"], models, meta.get("metadata", {}), device_model)


def _device_model_from_spec(name: str, spec: dict, arrays: dict) -> multivariate.DeviceModel:
    """The device model, its arrays checked against their hash (a bundle from before device
    models has none: ``device_model`` absent from ``bundle.json``)."""
    own = {key.split("/", 1)[1]: array for key, array in arrays.items() if key.split("/", 1)[0] == DEVICE_PREFIX}
    if "sha256" in spec and content_hash([arrays[f"{DEVICE_PREFIX}/{n}"] for n in own]) != spec["sha256"]:
        raise ModelFormatError(f"{name}: the device model's arrays do not match their content hash")
    try:
        return multivariate.from_entry(spec, own)
    except ModelFormatError as exc:
        raise ModelFormatError(f"{name}: device model: {exc}") from None


def _model_from_spec(name: str, sensor: str, spec: dict, arrays: dict):
    kind = KINDS.get(spec.get("type", "svm"))
    if kind is None:
        raise ModelFormatError(f"{name}: sensor {sensor} has unknown model type {spec.get('type')!r}")
    own = {key.rsplit("/", 1)[1]: array for key, array in arrays.items() if key.rsplit("/", 1)[0] == sensor}
    try:
        return kind.from_entry(spec, own)
    except ModelFormatError as exc:
        raise ModelFormatError(f"{name}: sensor {sensor}: {exc}") from None
