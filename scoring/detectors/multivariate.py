"""The multivariate device model: one model over a device's sensors together.

Per-sensor models miss what only shows in how sensors move together (a pump drawing more
current at the same flow). The device model judges each device window's vector of sensor
window means:

- each sensor is robust-scaled with its training median and interquartile range (IQR / 1.349,
  a standard deviation for normal data; the standard deviation where the IQR is 0), so one
  heavy-tailed sensor does not dominate; a sensor constant in training cannot be scaled and is
  dropped, by name (``dropped``);
- a PCA (scikit-learn) keeps the fewest components that explain ``VARIANCE_KEPT`` of the scaled
  training variance, at most ``d - 1`` of ``d`` sensors, so a residual space always remains;
- two statistics per window: SPE, the squared distance to the principal subspace (a break of
  the sensors' correlations), and Hotelling's T², the squared Mahalanobis distance inside it (a
  move along the normal correlations, but too far);
- each statistic's threshold is ``base.tail_threshold`` of its training values at half the
  false-alarm budget (so the two together flag about the budget); the score is
  ``max(SPE / spe_threshold, T² / t2_threshold)`` and a window is anomalous when it is over 1;
- each sensor's contribution is its share of the window's SPE (its squared residual over
  their sum): which sensors broke the correlations.

Unlike the per-sensor kinds, a higher score is *more* anomalous (the ratio to the threshold).
A sensor missing from a window is taken at its training median (it contributes nothing); a
window with no known sensor is not scored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from scoring.detectors.base import FitOptions, TrainingError, tail_threshold
from scoring.safe_format import ModelFormatError, model_metadata

SPEC = "device_model"
VARIANCE_KEPT = 0.95
IQR_TO_SIGMA = 1.349  # the IQR of a standard normal distribution
MAX_SENSORS = 10_000
_ARRAYS = ("center", "scale", "mean", "components", "variances")


@dataclass(frozen=True)
class DeviceModel:
    """A device's PCA model over its ``sensors`` (in column order).

    ``center`` and ``scale`` robust-scale each sensor; ``mean`` is the scaled training mean the
    PCA centres on; ``components`` (k x d) the principal axes and ``variances`` (k) their
    training variances; ``dropped`` the sensors left out because training saw them constant.
    """

    sensors: tuple[str, ...]
    center: np.ndarray
    scale: np.ndarray
    mean: np.ndarray
    components: np.ndarray
    variances: np.ndarray
    spe_threshold: float
    t2_threshold: float
    dropped: tuple[str, ...] = ()
    metadata: dict = field(default_factory=dict)

    def __post_init__(self):
        d = len(self.sensors)
        if not 1 <= d <= MAX_SENSORS or len(set(self.sensors)) != d:
            raise ModelFormatError(f"device model needs 1..{MAX_SENSORS} distinct sensors, has {d}")
        shapes = {"center": (d,), "scale": (d,), "mean": (d,), "components": (len(self.variances), d),
                  "variances": (len(self.variances),)}
        for name, shape in shapes.items():
            array = np.asarray(getattr(self, name), dtype=np.float64)
            if array.shape != shape:
                raise ModelFormatError(f"device model {name} has shape {array.shape}, not {shape}")
            if not np.isfinite(array).all():
                raise ModelFormatError(f"device model {name} holds non-finite values")
            object.__setattr__(self, name, array)
        if len(self.variances) >= d and d > 1:
            raise ModelFormatError(f"device model keeps {len(self.variances)} components of {d} sensors: "
                                   "at most d - 1")
        if (self.scale <= 0).any() or (self.variances <= 0).any():
            raise ModelFormatError("device model scales and variances must be positive")
        for name in ("spe_threshold", "t2_threshold"):
            value = getattr(self, name)
            if not isinstance(value, (int, float, np.floating)) or not math.isfinite(value) or value <= 0:
                raise ModelFormatError(f"device model {name} {value!r} is not a positive finite number")
            object.__setattr__(self, name, float(value))
        object.__setattr__(self, "sensors", tuple(str(s) for s in self.sensors))
        object.__setattr__(self, "dropped", tuple(str(s) for s in self.dropped))

    def statistics(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """SPE, T² and the per-sensor squared residuals of the rows of ``x`` (n x d, columns in
        ``sensors`` order; NaN where a sensor is missing, taken at its median)."""
        z = (np.asarray(x, dtype=np.float64) - self.center) / self.scale
        z = np.where(np.isnan(z), 0.0, z) - self.mean
        projected = z @ self.components.T
        residual = z - projected @ self.components
        squared = residual * residual
        return squared.sum(axis=1), (projected * projected / self.variances).sum(axis=1), squared

    def score(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Score (over 1 is anomalous), anomaly flags, and each sensor's share of SPE (n x d)."""
        spe, t2, squared = self.statistics(x)
        score = np.maximum(spe / self.spe_threshold, t2 / self.t2_threshold)
        with np.errstate(invalid="ignore", divide="ignore"):
            shares = np.where(spe[:, None] > 0, squared / spe[:, None], 0.0)
        return score, score > 1.0, shares


def robust_scale(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each column's median and robust scale (IQR / 1.349, else the standard deviation; exactly 0
    when the column is constant, whose standard deviation may round to a few 1e-17)."""
    columns = np.ascontiguousarray(x.T)  # one sensor a row: the quantiles read memory in order
    q25, center, q75 = np.percentile(columns, [25, 50, 75], axis=1)
    scale = (q75 - q25) / IQR_TO_SIGMA
    constant = columns.max(axis=1) == columns.min(axis=1)
    return center, np.where(constant, 0.0, np.where(scale > 0, scale, columns.std(axis=1)))


def fit_device(x: np.ndarray, sensors, options: FitOptions = FitOptions(), trained_from=None,
               trained_to=None) -> DeviceModel:
    """The device model of training windows ``x`` (n windows x d sensors, all present).

    Raises
    ------
    TrainingError
        Fewer than ``options.min_samples`` windows, non-finite values, or no sensor that moved.
    """
    from sklearn import __version__ as sklearn_version
    from sklearn.decomposition import PCA

    x = np.asarray(x, dtype=np.float64)
    sensors = [str(s) for s in sensors]
    if x.ndim != 2 or x.shape[1] != len(sensors):
        raise TrainingError(f"device windows have shape {x.shape}, not (windows, {len(sensors)} sensors)")
    if len(x) < max(options.min_samples, 2):
        raise TrainingError(f"{len(x)} windows with every sensor present, fewer than "
                            f"min_samples={options.min_samples}")
    if not np.isfinite(x).all():
        raise TrainingError("device windows hold NaN or infinite values")
    center, scale = robust_scale(x)
    moving = scale > 0
    if not moving.any():
        raise TrainingError(f"every sensor ({', '.join(sensors)}) is constant in training")
    kept = [s for s, m in zip(sensors, moving) if m]
    dropped = tuple(s for s, m in zip(sensors, moving) if not m)
    z = (x[:, moving] - center[moving]) / scale[moving]
    d = z.shape[1]
    mean = z.mean(axis=0)
    if d == 1:
        components, variances = np.zeros((0, 1)), np.zeros(0)
    else:
        # The d x d covariance's eigendecomposition: windows far outnumber sensors, and it is
        # many times faster than an SVD of the windows themselves.
        pca = PCA(n_components=d - 1, svd_solver="covariance_eigh").fit(z)
        explained = np.cumsum(pca.explained_variance_ratio_)
        k = min(int(np.searchsorted(explained, VARIANCE_KEPT) + 1), d - 1)
        keep = pca.explained_variance_[:k] > 0
        components, variances = pca.components_[:k][keep], pca.explained_variance_[:k][keep]
    rate = options.false_alarm_rate / 2
    model = DeviceModel(tuple(kept), center[moving], scale[moving], mean, components, variances, 1.0, 1.0, dropped)
    spe, t2, _ = model.statistics(x[:, moving])
    spe_threshold = _positive(tail_threshold(spe, rate))
    t2_threshold = _positive(tail_threshold(t2, rate)) if len(variances) else 1.0
    return DeviceModel(tuple(kept), center[moving], scale[moving], mean, components, variances, spe_threshold,
                       t2_threshold, dropped,
                       model_metadata(sklearn_version, len(x), trained_from, trained_to, components=len(variances),
                                      dropped=list(dropped), false_alarm_rate=options.false_alarm_rate))


def _positive(threshold: float) -> float:
    """A threshold a ratio can be taken to: training statistics all 0 (the sensors' training
    windows lie exactly on the subspace) still judge any departure."""
    return threshold if threshold > 0 else np.finfo(np.float64).eps


def to_entry(model: DeviceModel) -> tuple[dict[str, np.ndarray], dict]:
    """The model's arrays (by short name) and its JSON spec."""
    arrays = {name: getattr(model, name) for name in _ARRAYS}
    spec = {"type": SPEC, "sensors": list(model.sensors), "dropped": list(model.dropped),
            "spe_threshold": model.spe_threshold, "t2_threshold": model.t2_threshold}
    return arrays, spec


def from_entry(spec: dict, arrays: dict[str, np.ndarray]) -> DeviceModel:
    """The model a ``to_entry`` wrote, validated (``ModelFormatError`` otherwise)."""
    if spec.get("type") != SPEC:
        raise ModelFormatError(f"device model type {spec.get('type')!r} is not {SPEC!r}")
    missing = [name for name in _ARRAYS if name not in arrays]
    if missing:
        raise ModelFormatError(f"device model lacks array(s) {', '.join(missing)}")
    try:
        return DeviceModel(tuple(spec["sensors"]), *(arrays[name] for name in _ARRAYS), spec["spe_threshold"],
                           spec["t2_threshold"], tuple(spec.get("dropped", ())), spec.get("metadata", {}))
    except (KeyError, TypeError) as exc:
        raise ModelFormatError(f"device model spec is malformed: {type(exc).__name__}: {exc}") from None


def device_matrix(windows, sensors) -> tuple[np.ndarray, np.ndarray]:
    """The distinct ``ts`` (sorted) and the (ts x sensors) matrix of window values of one device's
    ``ts, sensor, value`` rows (NaN where a sensor has no window; rows of other sensors ignored;
    each (ts, sensor) at most once)."""
    import pandas as pd

    column = pd.Index([str(s) for s in sensors]).get_indexer(windows["sensor"].astype(str))
    rows = windows[column >= 0]
    column = column[column >= 0]
    ts_codes, ts = pd.factorize(rows["ts"], sort=True)
    matrix = np.full((len(ts), len(sensors)), np.nan)
    matrix[ts_codes, column] = rows["value"].to_numpy(dtype=np.float64)
    return pd.DatetimeIndex(ts).to_numpy(), matrix
