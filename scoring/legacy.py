"""Read pickled scikit-learn scaler + one-class SVM pipelines without running their code.

The reference implementation ships scikit-learn 0.19.2 pickles whose module paths
(``sklearn.preprocessing.data``, ``sklearn.svm.classes``) no longer exist. A restricted
unpickler resolves only the globals such a pickle needs (``ALLOWED_GLOBALS``):

* the Pipeline, StandardScaler and OneClassSVM classes (old and current module paths),
  replaced by inert holders whose state may only be a dict with str keys, so that no
  scikit-learn code runs;
* numpy's array reconstruction, replaced by checking wrappers: arrays start empty as numpy
  pickles them (``ndarray.__setstate__`` then checks the data length against the shape),
  and dtypes are plain bool, integer or float (no object, structured or subarray dtypes);
  ``numpy.ndarray`` itself is a non-callable placeholder that only ``_reconstruct`` accepts;
* the two helpers protocol 2 uses to write bytes.

Any other global (``os.system``, ``builtins.eval``, ...) is refused when the pickle names
it, so it is never called. The BUILD opcode (``__setstate__``) is admitted only on holder
instances, ndarrays and dtypes, with a dtype's state restricted to a plain byte order, so a
pickle cannot change the holder classes, the admitted functions or a dtype's kind. The
captured attributes become a ``SensorModel``.

A pickle can name one memoized buffer many times, so a small file could unpack to any size:
every array and byte string the admitted functions make counts against
``MAX_UNPACKED_BYTES``, and files over ``MAX_MODEL_FILE_BYTES`` are refused unread.
"""

from __future__ import annotations

import functools
import io
import pickle
from pathlib import Path

import numpy as np

from scoring.model_format import MAX_MODEL_FILE_BYTES, MAX_UNPACKED_BYTES, ModelFormatError, SensorModel, model_metadata


class LegacyModelError(ValueError):
    """A pickled model was refused or is not a scaler + one-class SVM pipeline."""


class _Pickled:
    """The attributes a pickle sets on an estimator, and nothing else."""

    def __init__(self, *args, **kwargs):
        if args or kwargs:
            raise pickle.UnpicklingError(f"{type(self).__name__} takes no arguments")

    def __reduce__(self):
        raise TypeError("a captured pickle state cannot be pickled again")

    def __setstate__(self, state):
        """Take a pickle's attribute dict; on the class itself this fails (no ``self``)."""
        if not isinstance(state, dict) or not all(isinstance(key, str) for key in state):
            raise pickle.UnpicklingError(f"{type(self).__name__} state must be a dict with str keys")
        self.__dict__.update(state)


class PickledPipeline(_Pickled):
    pass


class PickledScaler(_Pickled):
    pass


class PickledOneClassSVM(_Pickled):
    pass


class _NdarrayPlaceholder:
    """Stands for ``numpy.ndarray`` in a pickle: not callable, only ``_reconstruct`` accepts it."""

    __slots__ = ()

    def __repr__(self):
        return "<numpy.ndarray placeholder>"


_NDARRAY = _NdarrayPlaceholder()

# Plain data only: bool, signed and unsigned integers, floats.
_DTYPE_KINDS = "biuf"


def _check_dtype(dtype):
    """Refuse anything but a plain bool/int/float dtype (object, structured, subarray, ...)."""
    if (not isinstance(dtype, np.dtype) or dtype.kind not in _DTYPE_KINDS or dtype.hasobject
            or dtype.names is not None or dtype.subdtype is not None):
        raise pickle.UnpicklingError(f"refused dtype {dtype!r}: only plain bool, integer and float dtypes")
    return dtype


def _dtype(spec, align=False, copy=False):
    """``numpy.dtype`` for plain data only: an object dtype could smuggle arbitrary objects."""
    if not isinstance(spec, (str, bytes, np.dtype)):
        raise pickle.UnpicklingError(f"refused dtype specification {type(spec).__name__}")
    if isinstance(spec, np.dtype):
        _check_dtype(spec)
    dtype = np.dtype(spec, align=bool(align), copy=True)  # a new descriptor: BUILD may set its byte order
    if dtype.hasobject:
        raise pickle.UnpicklingError(f"refused object dtype {dtype}")
    return _check_dtype(dtype)


def _reconstruct(cls, shape, dtype_code):
    """``numpy.core.multiarray._reconstruct``: always ``(ndarray, (0,), b'b')`` in numpy pickles."""
    if cls is not _NDARRAY:
        raise pickle.UnpicklingError(f"refused array subclass {cls!r}")
    if type(shape) is not tuple or shape != (0,):
        raise pickle.UnpicklingError(f"refused array reconstruction with shape {shape!r}; numpy pickles (0,)")
    return np.ndarray.__new__(np.ndarray, (0,), _dtype(dtype_code))


def _frombuffer(buffer, dtype, shape, order, *, take):
    array = np.frombuffer(buffer, dtype=_dtype(dtype)).reshape(shape, order=order)
    take(array.nbytes)  # before the copy: the copy is what a repeated buffer would multiply
    return array.copy()


def _scalar(dtype, data=None):
    dtype = _dtype(dtype)
    return np.frombuffer(data, dtype=dtype, count=1)[0] if data is not None else dtype.type()


def _encode(text, encoding, *, take):
    """How protocol-2 pickles carry bytes; only that use is admitted."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise pickle.UnpicklingError(f"refused _codecs.encode with {encoding!r}")
    take(len(text))
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
    ("numpy", "ndarray"): _NDARRAY,
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


_COUNTED = (_frombuffer, _encode)  # admitted functions that make data: they count it
_PLAIN_DTYPE_STATE = (None, None, None, -1, -1, 0)  # no subarray, fields, sizes or flags


def _load_build(self):
    """The BUILD opcode, admitted only where a model pickle uses it."""
    state = self.stack.pop()
    inst = self.stack[-1]
    if isinstance(inst, np.dtype):
        # A dtype's state can turn it into a structured or object dtype; only a byte order is admitted.
        if not (type(state) is tuple and len(state) == 8 and type(state[0]) is int and state[0] == 3
                and isinstance(state[1], str) and state[1] in ("<", ">", "|", "=")
                and all(type(got) is type(want) and got == want for got, want in zip(state[2:], _PLAIN_DTYPE_STATE))):
            raise pickle.UnpicklingError("refused dtype state other than a byte order")
        inst.__setstate__(state)
        _check_dtype(inst)
    elif type(inst) is np.ndarray:
        if not (type(state) is tuple and len(state) == 5):
            raise pickle.UnpicklingError("refused array state")
        _check_dtype(state[2])
        self.take(len(state[4]) if isinstance(state[4], (bytes, bytearray)) else 0)
        inst.__setstate__(state)  # checks the data length against shape and dtype
    elif isinstance(inst, _Pickled):
        inst.__setstate__(state)
    else:
        raise pickle.UnpicklingError(f"refused to set the state of {inst!r}")


class RestrictedUnpickler(pickle._Unpickler):
    """Unpickler that resolves only ``ALLOWED_GLOBALS``; ``source`` names the file in errors.

    It is the pure-Python unpickler because only that one lets BUILD be restricted.
    """

    dispatch = dict(pickle._Unpickler.dispatch)
    dispatch[pickle.BUILD[0]] = _load_build

    def __init__(self, file, source: str, max_bytes: int = MAX_UNPACKED_BYTES):
        super().__init__(file)
        self.source, self.max_bytes, self.unpacked = source, max_bytes, 0

    def take(self, nbytes: int) -> None:
        """Count bytes the pickle makes; refuse it once they pass ``max_bytes``."""
        self.unpacked += int(nbytes)
        if self.unpacked > self.max_bytes:
            raise LegacyModelError(f"{self.source}: unpacks to more than {self.max_bytes:,} bytes of arrays, over "
                                   "the limit for a model (MAX_UNPACKED_BYTES)")

    def find_class(self, module: str, name: str):
        try:
            found = ALLOWED_GLOBALS[(module, name)]
        except (KeyError, TypeError):  # TypeError: an unhashable name from STACK_GLOBAL
            raise LegacyModelError(
                f"{self.source}: refused global {module}.{name}; a model pickle may only use "
                "scikit-learn's Pipeline, StandardScaler and OneClassSVM and numpy arrays"
            ) from None
        return functools.partial(found, take=self.take) if found in _COUNTED else found

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
        try:
            steps = [step for _, step in getattr(state, "steps", [])]
        except (TypeError, ValueError):
            raise LegacyModelError(f"{source}: a pipeline's steps must be (name, estimator) pairs") from None
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
    except ModelFormatError as exc:  # parameters the scorer cannot use (non-finite, two features, ...)
        raise LegacyModelError(f"{source}: {exc}") from None
    except (KeyError, IndexError, AttributeError, TypeError, ValueError, OverflowError) as exc:
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
    size = path.stat().st_size
    if size > MAX_MODEL_FILE_BYTES:
        raise LegacyModelError(f"{path}: {size:,} bytes, over the limit of {MAX_MODEL_FILE_BYTES:,} bytes for a "
                               "model file (MAX_MODEL_FILE_BYTES)")
    return sensor_model_from_state(load_pickled_state(path.read_bytes(), str(path)), str(path))
