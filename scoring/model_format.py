"""A safe, portable format for fitted sensor models, one bundle of them per device.

The default model, StandardScaler + OneClassSVM, is plain arrays (scaler mean and scale,
support vectors, dual coefficients) and a few numbers (kernel, gamma, coef0, degree,
intercept). Other scikit-learn outlier detectors are kept as ``skops`` bytes and loaded
with an explicit list of trusted types (``scoring.detectors``). A bundle is stored as two
files: ``params.npz`` (arrays only, loaded with ``allow_pickle=False``) and ``bundle.json``
(metadata: each model's scikit-learn version, training range, sample count and content
hash, and the SHA-256 of the arrays file). Loading runs no code and refuses arrays whose
hashes do not match the metadata.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

FORMAT_VERSION = 1
KERNELS = ("rbf", "linear", "poly", "sigmoid")
METADATA_KEYS = ("sklearn_version", "n_samples", "trained_from", "trained_to")


class ModelFormatError(ValueError):
    """A stored model bundle is malformed or does not match its metadata."""


def model_metadata(sklearn_version: str | None, n_samples: int | None, trained_from=None, trained_to=None,
                   **extra) -> dict:
    """The metadata every stored model carries (unknown values are ``None``)."""
    def stamp(value):
        return None if value is None else value.isoformat() if hasattr(value, "isoformat") else str(value)

    return {
        "sklearn_version": sklearn_version,
        "n_samples": None if n_samples is None else int(n_samples),
        "trained_from": stamp(trained_from),
        "trained_to": stamp(trained_to),
        **extra,
    }


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
        if np.ndim(self.support_vectors) != 2:
            raise ModelFormatError(f"support vectors must be 2-D, not {np.shape(self.support_vectors)}")
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
        """Extract the parameters of a fitted ``Pipeline([scaler, OneClassSVM])`` or a bare OneClassSVM."""
        steps = getattr(pipeline, "steps", [(None, pipeline)])
        scaler = steps[0][1] if len(steps) > 1 else None
        svm = steps[-1][1]
        n_features = svm.support_vectors_.shape[1]
        return cls(
            mean=_scaler_part(scaler, "mean_", "with_mean", np.zeros(n_features)),
            scale=_scaler_part(scaler, "scale_", "with_std", np.ones(n_features)),
            support_vectors=np.asarray(svm.support_vectors_, dtype=float),
            dual_coef=np.asarray(svm._dual_coef_, dtype=float).reshape(-1),
            intercept=float(np.ravel(svm._intercept_)[0]),
            kernel=svm.kernel,
            gamma=float(svm._gamma),
            coef0=float(svm.coef0),
            degree=int(svm.degree),
            metadata=dict(metadata or {}),
        )

    def to_pipeline(self):
        """A current scikit-learn ``Pipeline([scaler, OneClassSVM])`` with these parameters.

        Its ``decision_function`` and ``predict`` are scikit-learn's own, so it serves as
        the reference for parity checks and for exporting a model back to scikit-learn.
        """
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import StandardScaler
        from sklearn.svm import OneClassSVM

        n_sv, n_features = self.support_vectors.shape
        n_samples = int(self.metadata.get("n_samples") or max(n_sv, 1))
        scaler = StandardScaler()
        scaler.mean_, scaler.scale_ = np.array(self.mean, dtype=float), np.array(self.scale, dtype=float)
        scaler.var_ = scaler.scale_**2
        scaler.n_features_in_, scaler.n_samples_seen_ = n_features, n_samples
        svm = OneClassSVM(kernel=self.kernel, gamma=self.gamma, coef0=self.coef0, degree=self.degree)
        fitted = {
            "_sparse": False, "n_features_in_": n_features, "_gamma": float(self.gamma),
            "support_": np.arange(n_sv, dtype=np.int32),
            "support_vectors_": np.ascontiguousarray(self.support_vectors, dtype=float),
            "_n_support": np.array([n_sv, 0], dtype=np.int32),
            "dual_coef_": np.array(self.dual_coef, dtype=float).reshape(1, -1),
            "intercept_": np.array([self.intercept]), "_probA": np.empty(0), "_probB": np.empty(0),
            "fit_status_": 0, "shape_fit_": (n_samples, n_features), "offset_": np.array([-self.intercept]),
        }
        fitted["_dual_coef_"], fitted["_intercept_"] = fitted["dual_coef_"], fitted["intercept_"]
        for name, value in fitted.items():
            setattr(svm, name, value)
        return Pipeline([("scaler", scaler), ("classifier", svm)])


def _scaler_part(scaler, attribute: str, flag: str, default: np.ndarray) -> np.ndarray:
    """The scaler's mean or scale, or the identity when it was not fitted to use it."""
    value = None if scaler is None or not getattr(scaler, flag, True) else getattr(scaler, attribute, None)
    return default if value is None else np.asarray(value, dtype=float).reshape(-1)


@dataclass(frozen=True)
class ModelBundle:
    """One device's models, one per sensor, under one version.

    A model is a ``SensorModel`` or a ``scoring.detectors.DetectorModel``.
    """

    device: str
    version: str
    models: dict
    metadata: dict = field(default_factory=dict)


_ARRAYS = ("mean", "scale", "support_vectors", "dual_coef")


def _sha256(arrays: list[np.ndarray]) -> str:
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(str(array.shape).encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def _model_entry(sensor: str, model) -> tuple[dict[str, np.ndarray], dict]:
    """Arrays and JSON spec of one model."""
    if isinstance(model, SensorModel):
        arrays = {f"{sensor}/{name}": np.asarray(getattr(model, name), dtype=np.float64) for name in _ARRAYS}
        spec = {"type": "svm", "kernel": model.kernel, "gamma": model.gamma, "coef0": model.coef0,
                "degree": model.degree, "intercept": model.intercept}
    else:
        from scoring.detectors import DetectorModel, dump_detector

        if not isinstance(model, DetectorModel):
            raise ModelFormatError(f"sensor {sensor}: {type(model).__name__} is not a storable model")
        arrays = {f"{sensor}/skops": np.frombuffer(dump_detector(model.estimator), dtype=np.uint8)}
        spec = {"type": "skops", "detector": model.detector}
    spec["sha256"] = _sha256(list(arrays.values()))
    spec["metadata"] = model.metadata
    return arrays, spec


def bundle_to_files(bundle: ModelBundle) -> dict[str, bytes]:
    """Serialize a bundle to ``{"params.npz": ..., "bundle.json": ...}``."""
    arrays, sensors = {}, {}
    for sensor, model in sorted(bundle.models.items()):
        model_arrays, sensors[sensor] = _model_entry(sensor, model)
        arrays.update(model_arrays)
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


def versioned_bundle(device: str, models: dict, metadata: dict, prefix: str = "") -> ModelBundle:
    """A bundle whose version names when it was made and what it holds: ``<prefix><UTC time>-<hash>``."""
    draft = ModelBundle(device, "draft", models, metadata)
    digest = hashlib.sha256(bundle_to_files(draft)["params.npz"]).hexdigest()[:10]
    stamp = pd.Timestamp.now("UTC").strftime("%Y%m%dT%H%M%S")
    return ModelBundle(device, f"{prefix}{stamp}-{digest}", models, metadata)


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
    _check_array_sizes(name, params)
    try:
        with np.load(io.BytesIO(params), allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except ValueError as exc:
        raise ModelFormatError(f"{name}: params.npz is not a plain-array archive: {exc}") from None
    models = {}
    for sensor, spec in meta["sensors"].items():
        own = [arrays[key] for key in arrays if key.rsplit("/", 1)[0] == sensor]
        if "sha256" in spec and _sha256(own) != spec["sha256"]:
            raise ModelFormatError(f"{name}: sensor {sensor}'s arrays do not match their content hash")
        models[sensor] = _model_from_spec(name, sensor, spec, arrays)
    return ModelBundle(meta["device"], meta["version"], models, meta.get("metadata", {}))


def _check_array_sizes(name: str, params: bytes) -> None:
    """Refuse archive members whose header claims more data than the member holds."""
    with zipfile.ZipFile(io.BytesIO(params)) as archive:
        for info in archive.infolist():
            with archive.open(info) as member:
                major, _ = np.lib.format.read_magic(member)
                read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
                shape, _, dtype = read_header(member)
                if int(np.prod(shape, dtype=np.float64)) * dtype.itemsize > info.file_size:
                    raise ModelFormatError(f"{name}: {info.filename} claims shape {shape} of {dtype}, "
                                           f"more than its {info.file_size} bytes")


def _model_from_spec(name: str, sensor: str, spec: dict, arrays: dict):
    kind = spec.get("type", "svm")
    if kind == "skops":
        from scoring.detectors import DetectorModel, load_detector

        estimator = load_detector(arrays[f"{sensor}/skops"].tobytes(), source=f"{name} sensor {sensor}")
        return DetectorModel(estimator, spec.get("metadata", {}))
    if kind != "svm":
        raise ModelFormatError(f"{name}: sensor {sensor} has unknown model type {kind!r}")
    return SensorModel(
        **{key: arrays[f"{sensor}/{key}"] for key in _ARRAYS},
        intercept=float(spec["intercept"]),
        kernel=spec["kernel"],
        gamma=float(spec["gamma"]),
        coef0=float(spec["coef0"]),
        degree=int(spec["degree"]),
        metadata=spec.get("metadata", {}),
    )
