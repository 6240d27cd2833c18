"""A safe, portable format for fitted StandardScaler + OneClassSVM pipelines.

A model is plain arrays (scaler mean and scale, support vectors, dual coefficients) and a
few numbers (kernel, gamma, coef0, degree, intercept). A device's bundle holds one model
per sensor and is stored as two files: ``params.npz`` (arrays only, loaded with
``allow_pickle=False``) and ``bundle.json`` (metadata with the SHA-256 of the arrays file).
Loading runs no code and refuses arrays whose hash does not match the metadata.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field

import numpy as np

FORMAT_VERSION = 1
KERNELS = ("rbf", "linear", "poly", "sigmoid")


class ModelFormatError(ValueError):
    """A stored model bundle is malformed or does not match its metadata."""


@dataclass(frozen=True)
class SensorModel:
    """Fitted parameters of one sensor's scaler + one-class SVM.

    ``decision(x) = sum_j dual_coef[j] * K(sv[j], (x - mean) / scale) + intercept``;
    a reading is an anomaly where the decision value is not positive, as in libsvm.
    """

    mean: np.ndarray
    scale: np.ndarray
    support_vectors: np.ndarray  # (n_sv, n_features), in scaled space
    dual_coef: np.ndarray  # (n_sv,)
    intercept: float
    kernel: str = "rbf"
    gamma: float = 0.01
    coef0: float = 0.0
    degree: int = 3
    metadata: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.kernel not in KERNELS:
            raise ModelFormatError(f"kernel {self.kernel!r} is not one of {KERNELS}")
        n_sv, n_features = np.shape(self.support_vectors)
        if np.shape(self.dual_coef) != (n_sv,):
            raise ModelFormatError(f"dual_coef shape {np.shape(self.dual_coef)} != ({n_sv},)")
        if np.shape(self.mean) != (n_features,) or np.shape(self.scale) != (n_features,):
            raise ModelFormatError("scaler mean/scale do not match the support vectors' features")

    @property
    def n_features(self) -> int:
        return int(np.shape(self.support_vectors)[1])

    @classmethod
    def from_pipeline(cls, pipeline, metadata: dict | None = None) -> "SensorModel":
        """Extract the parameters of a fitted ``Pipeline([scaler, OneClassSVM])``."""
        scaler, svm = pipeline.steps[0][1], pipeline.steps[-1][1]
        n_features = svm.support_vectors_.shape[1]
        mean = getattr(scaler, "mean_", None)
        scale = getattr(scaler, "scale_", None)
        return cls(
            mean=np.zeros(n_features) if mean is None else np.asarray(mean, dtype=float),
            scale=np.ones(n_features) if scale is None else np.asarray(scale, dtype=float),
            support_vectors=np.asarray(svm.support_vectors_, dtype=float),
            dual_coef=np.asarray(svm.dual_coef_, dtype=float).reshape(-1),
            intercept=float(np.ravel(svm.intercept_)[0]),
            kernel=svm.kernel,
            gamma=float(svm._gamma),
            coef0=float(svm.coef0),
            degree=int(svm.degree),
            metadata=dict(metadata or {}),
        )


@dataclass(frozen=True)
class ModelBundle:
    """One device's models, one per sensor, under one version."""

    device: str
    version: str
    models: dict[str, SensorModel]
    metadata: dict = field(default_factory=dict)


_ARRAYS = ("mean", "scale", "support_vectors", "dual_coef")


def bundle_to_files(bundle: ModelBundle) -> dict[str, bytes]:
    """Serialize a bundle to ``{"params.npz": ..., "bundle.json": ...}``."""
    arrays = {}
    sensors = {}
    for sensor, model in sorted(bundle.models.items()):
        for name in _ARRAYS:
            arrays[f"{sensor}/{name}"] = np.asarray(getattr(model, name), dtype=np.float64)
        sensors[sensor] = {
            "kernel": model.kernel,
            "gamma": model.gamma,
            "coef0": model.coef0,
            "degree": model.degree,
            "intercept": model.intercept,
            "metadata": model.metadata,
        }
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
    }
    return {"params.npz": params, "bundle.json": json.dumps(meta, indent=1, sort_keys=True).encode()}


def bundle_from_files(params: bytes, meta_json: bytes) -> ModelBundle:
    """Load a bundle; refuse it if the arrays do not hash to what the metadata says."""
    try:
        meta = json.loads(meta_json)
    except json.JSONDecodeError as exc:
        raise ModelFormatError(f"bundle.json is not JSON: {exc}") from None
    if meta.get("format") != FORMAT_VERSION:
        raise ModelFormatError(f"bundle format {meta.get('format')!r} is not {FORMAT_VERSION}")
    digest = hashlib.sha256(params).hexdigest()
    if digest != meta.get("params_sha256"):
        raise ModelFormatError(
            f"bundle {meta.get('device')}/{meta.get('version')}: params.npz hashes to {digest}, "
            f"metadata says {meta.get('params_sha256')}"
        )
    try:
        with np.load(io.BytesIO(params), allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except ValueError as exc:
        raise ModelFormatError(f"params.npz is not a plain-array archive: {exc}") from None
    models = {}
    for sensor, spec in meta["sensors"].items():
        models[sensor] = SensorModel(
            **{name: arrays[f"{sensor}/{name}"] for name in _ARRAYS},
            intercept=float(spec["intercept"]),
            kernel=spec["kernel"],
            gamma=float(spec["gamma"]),
            coef0=float(spec["coef0"]),
            degree=int(spec["degree"]),
            metadata=spec.get("metadata", {}),
        )
    return ModelBundle(meta["device"], meta["version"], models, meta.get("metadata", {}))
