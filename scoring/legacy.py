"""Read pickled scikit-learn scaler + one-class SVM pipelines without running their code.

The reference implementation ships scikit-learn 0.19.2 pickles whose module paths
(``sklearn.preprocessing.data``, ``sklearn.svm.classes``) no longer exist. A restricted
unpickler admits only the globals such a pickle needs: the Pipeline, StandardScaler and
OneClassSVM classes (old and current module paths), which it replaces by inert
attribute holders so that no scikit-learn code runs, and numpy's array reconstruction
with non-object dtypes. Any other global (``os.system``, ``builtins.eval``, ...) is
refused before anything is called. The captured attributes become a ``SensorModel``.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np

from scoring.model_format import SensorModel, model_metadata


class LegacyModelError(ValueError):
    """A pickled model was refused or is not a scaler + one-class SVM pipeline."""


class _Pickled:
    """The attributes a pickle sets on an estimator, and nothing else."""

    def __init__(self, *args, **kwargs):
        if args or kwargs:
            raise pickle.UnpicklingError(f"{type(self).__name__} takes no arguments")

    def __reduce__(self):
        raise TypeError("a captured pickle state cannot be pickled again")


class PickledPipeline(_Pickled):
    pass


class PickledScaler(_Pickled):
    pass


class PickledOneClassSVM(_Pickled):
    pass


def _dtype(spec, align=False, copy=False):
    """``numpy.dtype`` for plain data only: an object dtype could smuggle arbitrary objects."""
    dtype = np.dtype(spec, align=bool(align), copy=bool(copy))
    if dtype.hasobject:
        raise pickle.UnpicklingError(f"refused object dtype {dtype}")
    return dtype


def _reconstruct(cls, shape, dtype_code):
    if cls is not np.ndarray:
        raise pickle.UnpicklingError(f"refused array subclass {cls!r}")
    return np.ndarray.__new__(np.ndarray, shape, _dtype(dtype_code))


def _frombuffer(buffer, dtype, shape, order):
    return np.frombuffer(buffer, dtype=_dtype(dtype)).reshape(shape, order=order).copy()


def _scalar(dtype, data=None):
    dtype = _dtype(dtype)
    return np.frombuffer(data, dtype=dtype, count=1)[0] if data is not None else dtype.type()


def _encode(text, encoding):
    """How protocol-2 pickles carry bytes; only that use is admitted."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise pickle.UnpicklingError(f"refused _codecs.encode with {encoding!r}")
    return text.encode("latin-1")


def _bytes(*args):
    """Protocol 2 writes empty bytes as ``bytes()``; nothing else is admitted."""
    if args:
        raise pickle.UnpicklingError("refused bytes() with arguments")
    return b""


ALLOWED_GLOBALS = {
    ("sklearn.pipeline", "Pipeline"): PickledPipeline,
    ("sklearn.preprocessing.data", "StandardScaler"): PickledScaler,
    ("sklearn.preprocessing._data", "StandardScaler"): PickledScaler,
    ("sklearn.svm.classes", "OneClassSVM"): PickledOneClassSVM,
    ("sklearn.svm._classes", "OneClassSVM"): PickledOneClassSVM,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _dtype,
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.multiarray", "scalar"): _scalar,
    ("numpy._core.multiarray", "scalar"): _scalar,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("_codecs", "encode"): _encode,
    ("__builtin__", "bytes"): _bytes,
    ("builtins", "bytes"): _bytes,
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only ``ALLOWED_GLOBALS``; ``source`` names the file in errors."""

    def __init__(self, file, source: str):
        super().__init__(file)
        self.source = source

    def find_class(self, module: str, name: str):
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise LegacyModelError(
                f"{self.source}: refused global {module}.{name}; a model pickle may only use "
                "scikit-learn's Pipeline, StandardScaler and OneClassSVM and numpy arrays"
            ) from None

    def persistent_load(self, pid):
        raise LegacyModelError(f"{self.source}: refused persistent id {pid!r}")


def load_pickled_state(data: bytes, source: str = "pickle") -> _Pickled:
    """Unpickle ``data`` with the restricted unpickler; the result holds attributes only."""
    try:
        return RestrictedUnpickler(io.BytesIO(data), source).load()
    except LegacyModelError:
        raise
    except Exception as exc:  # a malformed pickle can fail in many ways; none of them runs code
        raise LegacyModelError(f"{source}: not a readable model pickle ({type(exc).__name__}: {exc})") from None


def sensor_model_from_state(state: _Pickled, source: str = "pickle") -> SensorModel:
    """Convert a captured ``Pipeline([StandardScaler, OneClassSVM])`` (or bare OneClassSVM)."""
    if isinstance(state, PickledPipeline):
        steps = [step for _, step in getattr(state, "steps", [])]
        if len(steps) != 2 or not isinstance(steps[0], PickledScaler) or not isinstance(steps[1], PickledOneClassSVM):
            raise LegacyModelError(f"{source}: a pipeline must be StandardScaler then OneClassSVM")
        scaler, svm = steps
    elif isinstance(state, PickledOneClassSVM):
        scaler, svm = None, state
    else:
        raise LegacyModelError(f"{source}: holds a {type(state).__name__}, not a model pipeline")
    attrs = vars(svm)
    if attrs.get("_impl", "one_class") != "one_class" or attrs.get("_sparse", False):
        raise LegacyModelError(f"{source}: only a dense one-class SVM can be converted")
    try:
        n_samples = (vars(scaler).get("n_samples_seen_") if scaler is not None else None) or attrs["shape_fit_"][0]
        metadata = model_metadata(attrs.get("_sklearn_version"), int(np.ravel(n_samples)[0]), source=Path(source).name)
        return SensorModel.from_pipeline(_Attributes(scaler, svm), metadata)
    except (KeyError, AttributeError, TypeError, ValueError) as exc:
        raise LegacyModelError(f"{source}: incomplete one-class SVM state ({exc})") from None


class _Attributes:
    """A captured pipeline seen as the fitted estimators ``SensorModel.from_pipeline`` reads."""

    def __init__(self, scaler, svm):
        self.steps = ([("scaler", scaler)] if scaler is not None else []) + [("classifier", svm)]


def read_legacy_model(path: str | Path) -> SensorModel:
    """Read one pickled model file into the safe format.

    Parameters
    ----------
    path : str or Path
        A pickle of ``Pipeline([StandardScaler, OneClassSVM])``, as scikit-learn 0.19.2 or
        a current version wrote it.

    Raises
    ------
    LegacyModelError
        When the pickle asks for any other global (nothing of it runs) or is not such a model.
    """
    path = Path(path)
    return sensor_model_from_state(load_pickled_state(path.read_bytes(), str(path)), str(path))
