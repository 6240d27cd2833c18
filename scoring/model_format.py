"""A safe, portable format for fitted sensor models, one bundle of them per device.

The default model, StandardScaler + OneClassSVM, is plain arrays (scaler mean and scale,
support vectors, dual coefficients) and a few numbers (kernel, gamma, coef0, degree,
intercept). Other scikit-learn outlier detectors are kept as ``skops`` bytes and loaded
with an explicit list of trusted types (``scoring.detectors``). A bundle is stored as two
files: ``params.npz`` (arrays only, loaded with ``allow_pickle=False``) and ``bundle.json``
(metadata: each model's scikit-learn version, training range, sample count and content
hash, and the SHA-256 of the arrays file). Loading runs no code and refuses arrays whose
hashes do not match the metadata.

Every model is validated where it is built, whether trained, imported or loaded: finite
parameters, one feature (the scorer scores one value per reading) and sane sizes
(``MAX_SUPPORT_VECTORS``, ``MAX_POLY_DEGREE``). Every archive is checked before it is
unpacked (``check_archive``): at most ``MAX_UNPACKED_BYTES`` once decompressed, and no array
header claiming more data than its member holds.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import re
import zipfile
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

FORMAT_VERSION = 1
KERNELS = ("rbf", "linear", "poly", "sigmoid")
METADATA_KEYS = ("sklearn_version", "n_samples", "trained_from", "trained_to")

# Sizes no sensor model needs; a file beyond them is damaged or hostile. A day of 5 s
# windows is 17,280 samples, and a one-class SVM has at most as many support vectors.
MAX_SUPPORT_VECTORS = 200_000
MAX_POLY_DEGREE = 10
MAX_MODEL_FILE_BYTES = 64 << 20  # a model file offered to import
MAX_UNPACKED_BYTES = 128 << 20  # what one archive or pickle may unpack to
MAX_ARCHIVE_MEMBERS = 10_000


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
        """Refuse parameters the scorer cannot score: every way a file can be wrong lands here."""
        if self.kernel not in KERNELS:
            raise ModelFormatError(f"kernel {self.kernel!r} is not one of {KERNELS}")
        for name in _ARRAYS:
            value = np.asarray(getattr(self, name))
            if value.dtype.kind not in "biuf":
                raise ModelFormatError(f"{name} holds {value.dtype} values, not numbers")
            if value.dtype != np.float64:
                object.__setattr__(self, name, value.astype(np.float64))
        if np.ndim(self.support_vectors) != 2:
            raise ModelFormatError(f"support vectors must be 2-D, not {np.shape(self.support_vectors)}")
        n_sv, n_features = np.shape(self.support_vectors)
        if n_features != 1:
            raise ModelFormatError(f"the model has {n_features} features; a sensor model scores one value per reading")
        if not 1 <= n_sv <= MAX_SUPPORT_VECTORS:
            raise ModelFormatError(f"{n_sv} support vectors, outside 1..{MAX_SUPPORT_VECTORS} (MAX_SUPPORT_VECTORS)")
        if np.shape(self.dual_coef) != (n_sv,):
            raise ModelFormatError(f"dual_coef shape {np.shape(self.dual_coef)} != ({n_sv},)")
        if np.shape(self.mean) != (n_features,) or np.shape(self.scale) != (n_features,):
            raise ModelFormatError("scaler mean/scale do not match the support vectors' features")
        for name in _ARRAYS:
            if not np.isfinite(getattr(self, name)).all():
                raise ModelFormatError(f"{name} holds NaN or infinite values")
        if not (self.scale > 0).all():
            raise ModelFormatError(f"scaler scale {self.scale.tolist()} is not positive")
        for name in ("intercept", "gamma", "coef0"):
            value = getattr(self, name)
            if not isinstance(value, (int, float, np.integer, np.floating)) or not math.isfinite(value):
                raise ModelFormatError(f"{name} {value!r} is not a finite number")
        if self.gamma < 0:
            raise ModelFormatError(f"gamma {self.gamma} is negative")
        top = MAX_POLY_DEGREE if self.kernel == "poly" else np.iinfo(np.int32).max
        if not isinstance(self.degree, (int, np.integer)) or not 0 <= self.degree <= top:
            raise ModelFormatError(f"degree {self.degree!r} is outside 0..{top}"
                                   + (" (MAX_POLY_DEGREE)" if self.kernel == "poly" else ""))

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
            "support_vectors_": np.array(self.support_vectors, dtype=float, order="C"),
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
    arrays = _read_npz(f"{name} params.npz", params)
    models = {}
    for sensor, spec in meta["sensors"].items():
        own = [arrays[key] for key in arrays if key.rsplit("/", 1)[0] == sensor]
        if "sha256" in spec and _sha256(own) != spec["sha256"]:
            raise ModelFormatError(f"{name}: sensor {sensor}'s arrays do not match their content hash")
        models[sensor] = _model_from_spec(name, sensor, spec, arrays)
    return ModelBundle(meta["device"], meta["version"], models, meta.get("metadata", {}))


def check_archive(name: str, data: bytes, max_bytes: int = MAX_UNPACKED_BYTES, what: str = "a zip archive",
                  headers: bool = True) -> zipfile.ZipFile:
    """Open a zip archive (``params.npz``, a skops file) only if unpacking it stays bounded.

    Parameters
    ----------
    name : str
        Names the archive in errors.
    data : bytes
        The archive.
    max_bytes : int
        Most bytes its members may decompress to, all together (``MAX_UNPACKED_BYTES``).
        Python's ``zipfile`` never returns more than a member's declared size (it fails
        the CRC instead), so checking the declared sizes bounds what a reader unpacks
        reading each member once.
    what : str
        What the archive should be, for the error when it is not a zip archive.
    headers : bool
        Also read each ``.npy`` member's header and refuse one claiming more data than
        the member holds (a reader that reads the headers itself passes False).

    Raises
    ------
    ModelFormatError
        Naming the archive and the limit it exceeds, or an array header that claims more
        data than its member holds.
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise ModelFormatError(f"{name}: not {what} ({exc})") from None
    if len(infos) > MAX_ARCHIVE_MEMBERS:
        raise ModelFormatError(f"{name}: {len(infos):,} members, over the limit of {MAX_ARCHIVE_MEMBERS:,} "
                               "(MAX_ARCHIVE_MEMBERS)")
    total = sum(info.file_size for info in infos)
    if total > max_bytes:
        raise ModelFormatError(f"{name}: unpacks to {total:,} bytes, over the limit of {max_bytes:,} bytes "
                               "(MAX_UNPACKED_BYTES)")
    for info in infos if headers else ():
        if info.filename.endswith(".npy"):
            _check_array_header(name, archive, info)
    return archive


def _read_npz(name: str, data: bytes) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` archive, each header read once, plain numbers only (no pickle)."""
    archive = check_archive(name, data, headers=False)
    arrays = {}
    for info in archive.infolist():
        if not info.filename.endswith(".npy"):
            raise ModelFormatError(f"{name}: {info.filename} is not an array")
        member = archive.read(info)
        try:
            shape, fortran_order, dtype, offset = _npy_header(member)
        except ValueError as exc:
            raise ModelFormatError(f"{name}: {info.filename} is not a plain array ({exc})") from None
        if dtype.hasobject or dtype.kind not in "biuf":
            raise ModelFormatError(f"{name}: {info.filename} holds {dtype} values, not plain numbers")
        count = int(np.prod(shape, dtype=np.float64))
        if count * dtype.itemsize != len(member) - offset:
            raise ModelFormatError(f"{name}: {info.filename} claims shape {shape} of {dtype}, "
                                   f"not the {len(member) - offset} bytes it holds")
        array = np.frombuffer(member, dtype=dtype, count=count, offset=offset)
        arrays[info.filename[:-4]] = array.reshape(shape, order="F" if fortran_order else "C")
    return arrays


# The header numpy writes for a plain array, e.g. {'descr': '<f8', 'fortran_order': False, 'shape': (3, 1), }
_NPY_HEADER = re.compile(r"\{'descr': '([<>|=]?[biuf][0-9]{1,2})', 'fortran_order': (True|False), "
                         r"'shape': \(((?:[0-9]{1,18}, )*[0-9]{1,18},?)?\), \} *\n")


def _npy_header(member: bytes) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """Shape, Fortran order, dtype and data offset of a ``.npy`` file's bytes.

    Bundles hold thousands of tiny arrays: numpy's own reader (``ast.literal_eval`` per
    header) is the slowest part of loading them, so the header numpy writes is matched
    directly and anything else goes to numpy's reader.
    """
    if member[:8] == b"\x93NUMPY\x01\x00" and len(member) >= 10:
        length = int.from_bytes(member[8:10], "little")
        match = _NPY_HEADER.fullmatch(member[10:10 + length].decode("latin1"))
        if match:
            shape = tuple(int(n) for n in match[3].split(",") if n.strip()) if match[3] else ()
            return shape, match[2] == "True", np.dtype(match[1]), 10 + length
    stream = io.BytesIO(member)
    major, _ = np.lib.format.read_magic(stream)
    read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
    shape, fortran_order, dtype = read_header(stream)
    return shape, fortran_order, dtype, stream.tell()


def _check_array_header(name: str, archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> None:
    """Refuse a ``.npy`` member whose header claims more data than the member holds."""
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
    try:
        return _svm_from_spec(sensor, spec, arrays)
    except ModelFormatError as exc:
        raise ModelFormatError(f"{name}: sensor {sensor}: {exc}") from None


def _svm_from_spec(sensor: str, spec: dict, arrays: dict) -> SensorModel:
    return SensorModel(
        **{key: arrays[f"{sensor}/{key}"] for key in _ARRAYS},
        intercept=float(spec["intercept"]),
        kernel=spec["kernel"],
        gamma=float(spec["gamma"]),
        coef0=float(spec["coef0"]),
        degree=int(spec["degree"]),
        metadata=spec.get("metadata", {}),
    )
