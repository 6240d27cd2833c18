"""Other scikit-learn outlier detectors, kept with ``skops`` and loaded only from trusted types.

IsolationForest, EllipticEnvelope and LocalOutlierFactor (``novelty=True``), bare or after
a StandardScaler in a Pipeline, are stored as ``skops`` bytes. ``skops.io.loads`` audits the
types the bytes would build before constructing anything and refuses any outside its
defaults and ``TRUSTED_TYPES``. What it trusts it then constructs, whatever the object
graph; only afterwards is the loaded object checked to be one of the supported detectors,
and the node arrays of its trees (scikit-learn's ``Tree``, ``KDTree`` and ``BallTree`` do not
check them when loaded, and out-of-range indices crash the process when scoring) are
checked to stay in range. They are scored one model at a time (``DetectorModel.score``);
only the one-class SVM has the vectorized path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import skops.io as sio
from skops.io.exceptions import UntrustedTypesFoundException
from sklearn.covariance import EllipticEnvelope
from sklearn.ensemble import IsolationForest
from sklearn.neighbors import BallTree, KDTree
from sklearn.neighbors import LocalOutlierFactor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree._tree import Tree

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
        if len(estimator.steps) > 1:  # the StandardScaler in front
            return int(estimator.steps[0][1].n_samples_seen_)
        estimator = estimator.steps[-1][1]
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
        When the bytes are not a readable skops archive, hold a type outside skops'
        defaults and ``TRUSTED_TYPES``, an object that is not a supported detector, or
        trees whose node arrays are out of range.
    """
    try:
        estimator = sio.loads(data, trusted=TRUSTED_TYPES)  # audits all types before constructing any
    except UntrustedTypesFoundException as exc:
        listed = re.search(r"\[(.*?)\]", str(exc))
        refused = listed.group(1).replace("'", "") if listed else str(exc).splitlines()[0]
        raise ModelFormatError(f"{source}: refused untrusted type(s) {refused}; "
                               f"trusted beyond skops' defaults: {', '.join(TRUSTED_TYPES)}") from None
    except Exception as exc:  # skops and the constructed objects raise many types for malformed archives
        raise ModelFormatError(f"{source}: not a skops archive ({type(exc).__name__}: {exc})") from None
    try:
        detector = _detector_of(estimator) if isinstance(estimator, (Pipeline, *DETECTORS)) else None
    except (TypeError, ValueError, AttributeError):  # steps that are not (name, estimator) pairs
        detector = None
    if detector is None:
        raise ModelFormatError(f"{source}: {type(estimator).__name__} is not a supported detector")
    try:
        _check_trees(detector)
    except ModelFormatError as exc:
        raise ModelFormatError(f"{source}: {exc}") from None
    except Exception as exc:  # a missing or mistyped attribute
        raise ModelFormatError(f"{source}: malformed {type(detector).__name__} ({type(exc).__name__}: {exc})") from None
    return estimator


def _in_range(values, low, high) -> bool:
    values = np.asarray(values)
    return values.dtype.kind in "iu" and (values.size == 0 or (values.min() >= low and values.max() < high))


def _check_trees(detector) -> None:
    """Refuse trees whose node arrays would index out of range when scoring."""
    if isinstance(detector, IsolationForest):
        n_features = int(detector.n_features_in_)
        if len(detector.estimators_) != len(detector.estimators_features_):
            raise ModelFormatError("IsolationForest has a different number of trees and feature sets")
        subsample = detector._max_features != n_features  # as IsolationForest.score_samples decides
        for i, (estimator, features) in enumerate(zip(detector.estimators_, detector.estimators_features_)):
            if not _in_range(features, 0, n_features) or np.ndim(features) != 1:
                raise ModelFormatError(f"IsolationForest tree {i}: feature subset outside [0, {n_features})")
            _check_decision_tree(estimator.tree_, len(features) if subsample else n_features, f"IsolationForest tree {i}")
    elif isinstance(detector, LocalOutlierFactor):
        tree = getattr(detector, "_tree", None)
        if detector._fit_method in ("kd_tree", "ball_tree") or tree is not None:
            _check_binary_tree(tree, int(detector.n_features_in_), f"LocalOutlierFactor {detector._fit_method}")


def _check_decision_tree(tree, n_features: int, name: str) -> None:
    """``Tree``: children in ``(node, node_count)`` or both -1 (leaf, feature -2), features in range."""
    if type(tree) is not Tree:
        raise ModelFormatError(f"{name}: tree_ is a {type(tree).__name__}, not a Tree")
    node_count = tree.node_count
    # node_count comes from the file; the node arrays are views of node_count nodes over capacity.
    if not 0 < node_count <= tree.capacity:
        raise ModelFormatError(f"{name}: node_count {node_count} outside [1, capacity {tree.capacity}]")
    if tree.n_features != n_features or tree.n_outputs != 1:
        raise ModelFormatError(f"{name}: tree of {tree.n_features} features and {tree.n_outputs} outputs "
                               f"where {n_features} features and 1 output are scored")
    left, right, feature = tree.children_left, tree.children_right, tree.feature
    if not all(len(a) == node_count for a in (left, right, feature, tree.threshold, tree.value)):
        raise ModelFormatError(f"{name}: node arrays are not node_count ({node_count}) long")
    if not (_in_range(left, -1, node_count) and _in_range(right, -1, node_count)):
        raise ModelFormatError(f"{name}: children_left/children_right outside [-1, {node_count})")
    if not _in_range(feature, -2, n_features):
        raise ModelFormatError(f"{name}: feature outside [-2, {n_features})")
    leaf = left == -1
    nodes = np.arange(node_count)
    if (not np.array_equal(leaf, right == -1) or not np.array_equal(leaf, feature == -2)
            or (feature[~leaf] < 0).any()):
        raise ModelFormatError(f"{name}: a node is neither a leaf (children -1, feature -2) nor a split")
    # scikit-learn numbers children after their parent; anything else could loop forever.
    if (left[~leaf] <= nodes[~leaf]).any() or (right[~leaf] <= nodes[~leaf]).any():
        raise ModelFormatError(f"{name}: a child does not come after its parent")


def _check_binary_tree(tree, n_features: int, name: str) -> None:
    """``KDTree``/``BallTree``: point indices, node ranges and node bounds consistent with the data."""
    if type(tree) not in (KDTree, BallTree):
        raise ModelFormatError(f"{name}: _tree is a {type(tree).__name__}, not a KDTree or BallTree")
    state = tree.__getstate__()
    leaf_size, n_nodes = state[4], state[6]
    data, idx_array, node_data, node_bounds = tree.get_arrays()
    if data.ndim != 2 or data.shape[1] != n_features or data.shape[0] < 1:
        raise ModelFormatError(f"{name}: data of shape {data.shape} where {n_features} feature(s) are scored")
    n_samples = data.shape[0]
    if not (isinstance(leaf_size, (int, np.integer)) and leaf_size >= 1):
        raise ModelFormatError(f"{name}: leaf_size {leaf_size!r} is not positive")
    if idx_array.shape != (n_samples,) or not _in_range(idx_array, 0, n_samples):
        raise ModelFormatError(f"{name}: idx_array is not {n_samples} indices in [0, {n_samples})")
    if not (isinstance(n_nodes, (int, np.integer)) and n_nodes >= 1) or node_data.shape != (n_nodes,):
        raise ModelFormatError(f"{name}: node_data is not n_nodes ({n_nodes}) long")
    start, end = node_data["idx_start"], node_data["idx_end"]
    if not ((0 <= start) & (start <= end) & (end <= n_samples)).all():
        raise ModelFormatError(f"{name}: node_data idx_start/idx_end outside 0 <= start <= end <= {n_samples}")
    inner = ~node_data["is_leaf"].astype(bool)
    if (2 * np.arange(n_nodes)[inner] + 2 >= n_nodes).any():
        raise ModelFormatError(f"{name}: a node without children is not a leaf")
    expected = (2 if type(tree) is KDTree else 1, n_nodes, n_features)
    if node_bounds.shape != expected:
        raise ModelFormatError(f"{name}: node_bounds of shape {node_bounds.shape}, not {expected}")
