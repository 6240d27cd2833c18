"""The reference kind: StandardScaler + OneClassSVM per sensor, scored exactly as libsvm does.

The model is plain arrays (scaler mean and scale, support vectors, dual coefficients) and a
few numbers (kernel, gamma, coef0, degree, intercept, threshold). Imported legacy models keep
libsvm's own boundary (``threshold`` 0); a model bscore trains moves it to the false-alarm
budget on its own training windows, so that a sensor the SVM cannot describe (constant,
quantized, another regime) flags its budget, not every window. Scores stay scikit-learn's
``decision_function``.

Models are scored in groups sharing a kernel (models with many support vectors apart, so that
few are padded to them), in cache-sized blocks: where a block's runs have equal length (each
model has the hour's windows) its rows form a grid and each model's parameters broadcast along
its row; otherwise they are repeated over the runs.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from scoring.detectors.base import FitOptions, SvmParams, TrainingError
from scoring.safe_format import ModelFormatError, model_metadata

KERNELS = ("rbf", "linear", "poly", "sigmoid")
# A day of 5 s windows is 17,280 samples, and a one-class SVM has at most as many support vectors.
MAX_SUPPORT_VECTORS = 200_000
MAX_POLY_DEGREE = 10
NARROW_SV = 16
_ARRAYS = ("mean", "scale", "support_vectors", "dual_coef")


@dataclass(frozen=True)
class SensorModel:
    """Fitted parameters of one sensor's scaler + one-class SVM.

    ``decision(x) = sum_j dual_coef[j] * K(sv[j], (x - mean) / scale) + intercept``;
    a reading is an anomaly where the decision value is at most ``threshold``: 0 (libsvm's own
    boundary, kept for imported models) or, for a model bscore trained, calibrated on its
    training windows to the false-alarm budget.
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
    threshold: float = 0.0  # flagged where decision <= threshold; 0 is libsvm's own boundary

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
        for name in ("intercept", "gamma", "coef0", "threshold"):
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



class _SvmGroup:
    """One-class SVMs sharing a kernel (and degree), support vectors padded to the widest.

    ``p`` holds the members' parameters as flat arrays (``_svm_arrays``).
    """

    def __init__(self, kernel: str, degree: int, p: dict[str, np.ndarray]):
        self.kernel, self.degree, self.n_sv = kernel, int(degree), p["n_sv"]
        count, width = len(self.n_sv), max(int(self.n_sv.max()), 1)
        offsets = np.cumsum(self.n_sv) - self.n_sv
        position = np.arange(len(p["vectors"])) - np.repeat(offsets, self.n_sv)
        member = np.repeat(np.arange(count), self.n_sv)
        sv, coef = np.zeros((width, count)), np.zeros((width, count))
        sv[position, member], coef[position, member] = p["vectors"], p["coef"]
        self.mean, self.intercept, self.coef0, self.threshold = p["mean"], p["intercept"], p["coef0"], p["threshold"]
        scale, gamma = p["scale"], p["gamma"]
        if kernel == "rbf":
            # gamma * (z - s)^2 == (z*sqrt(gamma) - s*sqrt(gamma))^2, with z = (x - mean) / scale;
            # a positive coefficient c enters as exp(log c - ...), saving one pass per vector.
            self.factor = np.sqrt(gamma) / scale
            self.vectors = sv * np.sqrt(gamma)
            self.positive = bool((p["coef"] > 0).all())
            with np.errstate(divide="ignore"):
                self.coef = np.log(coef) if self.positive else coef
        elif kernel == "linear":
            self.factor = (coef * sv).sum(axis=0) / scale
        else:
            # Same operations in the same order as libsvm: a polynomial's terms can be large.
            self.scale, self.gamma, self.vectors, self.coef = scale, gamma, sv, coef

    def decision(self, x: np.ndarray, model: np.ndarray, length: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Decision values and flags of ``x``, whose runs of ``length`` rows have group-local ``model``."""
        if (length == length[0]).all():
            # Runs of equal length (every model has the hour's windows) form a grid, and each
            # run's parameters broadcast along its row instead of being repeated per reading.
            x = x.reshape(len(length), int(length[0]))

            def per_row(params):
                return params[model][:, None]
        else:
            def per_row(params):
                return np.repeat(params[model], length)

        # Only as many vectors as the widest model of this block has.
        score = self._decision(x, per_row, int(self.n_sv[model].max())).reshape(-1)
        # libsvm: an SVM's label is +1 only where decision > 0; a calibrated model moves that boundary.
        return score, score <= np.repeat(self.threshold[model], length)

    def _decision(self, x: np.ndarray, per_row, width: int) -> np.ndarray:
        t = x - per_row(self.mean)
        if self.kernel == "linear":
            t *= per_row(self.factor)
            return np.add(t, per_row(self.intercept), out=t)
        if self.kernel != "rbf":
            return self._kernel_sum(t / per_row(self.scale), per_row, width)
        t *= per_row(self.factor)
        acc, d = np.empty_like(t), np.empty_like(t)
        acc[...] = per_row(self.intercept)
        for j in range(width):
            np.subtract(t, per_row(self.vectors[j]), out=d)
            np.square(d, out=d)
            if self.positive:
                np.subtract(per_row(self.coef[j]), d, out=d)
                np.exp(d, out=d)
            else:
                np.negative(d, out=d)
                np.exp(d, out=d)
                d *= per_row(self.coef[j])
            acc += d
        return acc

    def _kernel_sum(self, z: np.ndarray, per_row, width: int) -> np.ndarray:
        """Poly or sigmoid: sum_j coef_j * K(sv_j, z) + intercept, summed as libsvm does."""
        gamma, coef0 = per_row(self.gamma), per_row(self.coef0)
        acc = np.zeros_like(z)
        for j in range(width):
            d = z * per_row(self.vectors[j])
            d *= gamma
            d += coef0
            d = _powi(d, self.degree) if self.kernel == "poly" else np.tanh(d, out=d)
            d *= per_row(self.coef[j])
            acc += d
        acc += per_row(self.intercept)
        return acc


def _powi(base: np.ndarray, times: int) -> np.ndarray:
    """``base ** times`` by repeated squaring, exactly as libsvm's ``powi``."""
    result, power = np.ones_like(base), base.copy()
    while times > 0:
        if times % 2 == 1:
            result *= power
        power *= power
        times //= 2
    return result



def _ranges(counts: np.ndarray) -> np.ndarray:
    """``concatenate([arange(c) for c in counts])`` without the loop."""
    return np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)



def _svm_arrays(models: list[SensorModel]) -> dict[str, np.ndarray]:
    """Parameters of one-feature SVMs as flat arrays (support vectors and coefficients concatenated)."""
    vectors = [m.support_vectors for m in models]
    n = len(models)
    wide = next((v.shape[1] for v in vectors if v.shape[1] != 1), None)
    if wide is not None:
        raise ValueError(f"the batch scorer scores one value per reading; a model has {wide} features")
    return {
        "n_sv": np.fromiter(map(len, vectors), np.int64, n),
        "vectors": np.concatenate(vectors).reshape(-1) if n else np.empty(0),
        "coef": np.concatenate([m.dual_coef for m in models]),
        "mean": np.concatenate([m.mean for m in models]),
        "scale": np.concatenate([m.scale for m in models]),
        "gamma": np.fromiter((m.gamma for m in models), float, n),
        "intercept": np.fromiter((m.intercept for m in models), float, n),
        "threshold": np.fromiter((m.threshold for m in models), float, n),
        "coef0": np.fromiter((m.coef0 for m in models), float, n),
        "degree": np.fromiter((m.degree for m in models), np.int64, n),
        "kernel": [m.kernel for m in models],
    }



def build_pipeline(params: SvmParams = SvmParams()):
    """The unfitted scaler + one-class SVM pipeline."""
    # scikit-learn is imported where it is used: scoring needs only the arrays, and importing it
    # costs every command and worker seconds.
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import OneClassSVM

    return Pipeline(
        [
            ("scaler", StandardScaler()),
            (
                "classifier",
                OneClassSVM(
                    nu=params.nu,
                    kernel=params.kernel,
                    gamma=params.gamma,
                    coef0=params.coef0,
                    degree=params.degree,
                ),
            ),
        ]
    )


def fit_sensor_model(values: np.ndarray, params: SvmParams = SvmParams(), trained_from=None,
                     trained_to=None) -> tuple[SensorModel, object]:
    """Fit the pipeline on one sensor's window values; return its safe form and the pipeline.

    Raises
    ------
    TrainingError
        When the values cannot be fitted: non-finite values, values whose scaling
        overflows (a reading of 1e300 has an infinite variance), a fit scikit-learn refuses,
        or fitted parameters the scorer could not use.
    """
    x = np.asarray(values, dtype=float).reshape(-1, 1)
    if not np.isfinite(x).all():
        raise TrainingError(f"{int((~np.isfinite(x)).sum())} of {len(x)} windows are NaN or infinite")
    try:
        with np.errstate(over="raise", invalid="raise", divide="raise", under="ignore"), warnings.catch_warnings():
            # Overflow in the scaler's variance is an error here, not a warning and a NaN later.
            warnings.simplefilter("error", RuntimeWarning)
            pipeline = build_pipeline(params).fit(x)
    except (ValueError, FloatingPointError, OverflowError, RuntimeWarning) as exc:
        raise TrainingError(f"cannot fit {len(x)} windows (min {x.min():.6g}, max {x.max():.6g}): "
                            f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}") from None
    import sklearn

    metadata = model_metadata(sklearn.__version__, len(x), trained_from, trained_to, nu=params.nu)
    try:
        return SensorModel.from_pipeline(pipeline, metadata), pipeline
    except ModelFormatError as exc:
        raise TrainingError(f"the fitted model is not usable: {exc}") from None




def calibrated_threshold(decision: np.ndarray, rate: float) -> float:
    """A threshold under which ``decision <= threshold`` flags at most ``rate`` of the training
    decisions: halfway between the ``floor(rate * n)``-th smallest one and the value below it,
    so that the batch scorer's last-bit differences from libsvm cannot move a window across it."""
    ordered = np.sort(decision)
    first_kept = ordered[int(math.floor(rate * len(ordered)))]
    below = ordered[ordered < first_kept]
    if len(below):
        return float((below[-1] + first_kept) / 2)
    return float(first_kept - 1e-9 * max(1.0, abs(first_kept)))


class SvmKind:
    """The reference StandardScaler + OneClassSVM, threshold calibrated when bscore trains it."""

    name = "svm"
    model_type = SensorModel

    def fit(self, values: np.ndarray, options: FitOptions = FitOptions(), trained_from=None,
            trained_to=None) -> SensorModel:
        model, pipeline = fit_sensor_model(values, options.svm, trained_from, trained_to)
        decision = pipeline.decision_function(np.asarray(values, dtype=float).reshape(-1, 1))
        threshold = calibrated_threshold(decision, options.false_alarm_rate)
        metadata = {**model.metadata, "kind": self.name, "false_alarm_rate": options.false_alarm_rate,
                    "training_flag_rate": float(np.mean(decision <= threshold))}
        return SensorModel(model.mean, model.scale, model.support_vectors, model.dual_coef, model.intercept,
                           model.kernel, model.gamma, model.coef0, model.degree, metadata, threshold)

    def to_entry(self, model: SensorModel) -> tuple[dict[str, np.ndarray], dict]:
        arrays = {name: np.asarray(getattr(model, name), dtype=np.float64) for name in _ARRAYS}
        spec = {"kernel": model.kernel, "gamma": model.gamma, "coef0": model.coef0, "degree": model.degree,
                "intercept": model.intercept}
        if model.threshold != 0.0:  # imported models keep the spec they always had
            spec["threshold"] = model.threshold
        return arrays, spec

    def from_entry(self, spec: dict, arrays: dict[str, np.ndarray]) -> SensorModel:
        return SensorModel(
            **{key: arrays[key] for key in _ARRAYS},
            intercept=float(spec["intercept"]),
            kernel=spec["kernel"],
            gamma=float(spec["gamma"]),
            coef0=float(spec["coef0"]),
            degree=int(spec["degree"]),
            metadata=spec.get("metadata", {}),
            threshold=float(spec.get("threshold", 0.0)),
        )

    def compile(self, models: list) -> list[tuple[np.ndarray, _SvmGroup]]:
        """One group per kernel (and degree), wide models apart so that narrow ones are not padded to them."""
        if not models:
            return []
        p = _svm_arrays(models)
        batches = []
        bucket = np.where(p["n_sv"] <= NARROW_SV, 0, 1 << np.ceil(np.log2(np.maximum(p["n_sv"], 1))).astype(int))
        kind = [(kernel, degree if kernel == "poly" else 0, 0 if kernel == "linear" else int(b))
                for kernel, degree, b in zip(p["kernel"], p["degree"].tolist(), bucket.tolist())]
        codes, keys = pd.factorize(pd.Series(kind, dtype=object))
        offsets = np.cumsum(p["n_sv"]) - p["n_sv"]
        for gid, (kernel, degree, _) in enumerate(keys):
            members = np.flatnonzero(codes == gid)
            sv_rows = np.repeat(offsets[members], p["n_sv"][members]) + _ranges(p["n_sv"][members])
            group = {k: v[members] for k, v in p.items() if k not in ("vectors", "coef", "kernel", "degree")}
            group.update(vectors=p["vectors"][sv_rows], coef=p["coef"][sv_rows])
            batches.append((members, _SvmGroup(kernel, degree, group)))
        return batches




KIND = SvmKind()
