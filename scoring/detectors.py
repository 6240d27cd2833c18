"""Other scikit-learn outlier detectors, kept with ``skops`` and loaded only from trusted types.

IsolationForest, EllipticEnvelope and LocalOutlierFactor (``novelty=True``), bare or after
a StandardScaler in a Pipeline, are stored as ``skops`` bytes. Loading first lists the
types the bytes would build and refuses any outside ``TRUSTED_TYPES`` (beyond what skops
itself trusts), so nothing else is constructed; the loaded object must then be one of the
supported detectors. They are scored one model at a time (``DetectorModel.score``); only the
one-class SVM has the vectorized path.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import skops.io as sio
from sklearn.covariance import EllipticEnvelope
from sklearn.ensemble import IsolationForest
from sklearn.neighbors import LocalOutlierFactor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from scoring.model_format import ModelFormatError

DETECTORS = (IsolationForest, EllipticEnvelope, LocalOutlierFactor)
# Types skops does not trust by default but the supported detectors are made of.
TRUSTED_TYPES = [
    "sklearn.tree._tree.Tree",
    "sklearn.neighbors._kd_tree.KDTree",
    "sklearn.neighbors._ball_tree.BallTree",
    "sklearn.metrics._dist_metrics.EuclideanDistance64",
]


def _detector_of(estimator):
    """The outlier detector of a supported estimator, or ``None``."""
    steps = estimator.steps if isinstance(estimator, Pipeline) else [(None, estimator)]
    *head, (_, last) = steps
    if len(head) > 1 or any(not isinstance(step, StandardScaler) for _, step in head):
        return None
    if not isinstance(last, DETECTORS):
        return None
    if isinstance(last, LocalOutlierFactor) and not last.novelty:
        return None
    return last


@dataclass(frozen=True)
class DetectorModel:
    """A fitted outlier detector (optionally after a StandardScaler) for one sensor.

    ``score`` is the detector's ``decision_function``; a reading is an anomaly where it is
    negative, as in the detectors' own ``predict``.
    """

    estimator: object
    metadata: dict = field(default_factory=dict)

    def __post_init__(self):
        if _detector_of(self.estimator) is None:
            raise ModelFormatError(
                f"{type(self.estimator).__name__} is not a supported detector: one of "
                f"{', '.join(d.__name__ for d in DETECTORS)} (LocalOutlierFactor with novelty=True), "
                "bare or after a StandardScaler"
            )

    @property
    def detector(self) -> str:
        return type(_detector_of(self.estimator)).__name__

    def score(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Decision values and anomaly flags of one-feature readings."""
        decision = np.asarray(self.estimator.decision_function(np.asarray(values, dtype=float).reshape(-1, 1)),
                              dtype=float)
        return decision, decision < 0


def training_samples(estimator) -> int | None:
    """How many samples a supported detector was fitted on, where it records that."""
    if isinstance(estimator, Pipeline):
        return int(estimator.steps[0][1].n_samples_seen_)
    if isinstance(estimator, LocalOutlierFactor):
        return int(estimator.n_samples_fit_)
    if isinstance(estimator, EllipticEnvelope):
        return len(estimator.support_)
    return None  # IsolationForest keeps only its subsample size


def dump_detector(estimator) -> bytes:
    """The ``skops`` bytes of a supported detector."""
    return sio.dumps(estimator)


def load_detector(data: bytes, source: str = "skops data"):
    """Load a detector from ``skops`` bytes, refusing any type that is not trusted.

    Raises
    ------
    ModelFormatError
        When the bytes hold a type outside skops' defaults and ``TRUSTED_TYPES``, or an
        object that is not a supported detector.
    """
    try:
        refused = sorted(set(sio.get_untrusted_types(data=data)) - set(TRUSTED_TYPES))
    except Exception as exc:  # skops raises several types for malformed archives
        raise ModelFormatError(f"{source}: not a skops archive ({exc})") from None
    if refused:
        raise ModelFormatError(f"{source}: refused untrusted type(s) {', '.join(refused)}; "
                               f"trusted beyond skops' defaults: {', '.join(TRUSTED_TYPES)}")
    estimator = sio.loads(data, trusted=TRUSTED_TYPES)
    if _detector_of(estimator) is None:
        raise ModelFormatError(f"{source}: {type(estimator).__name__} is not a supported detector")
    return estimator
