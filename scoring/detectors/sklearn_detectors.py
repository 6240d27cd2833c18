"""Other scikit-learn outlier detectors, kept with ``skops`` and loaded only from trusted types.

IsolationForest, EllipticEnvelope and LocalOutlierFactor (``novelty=True``), bare or after
a StandardScaler in a Pipeline, are stored as ``skops`` bytes. ``skops.io.loads`` audits the
types the bytes would build before constructing anything and refuses any outside its
defaults and ``TRUSTED_TYPES``. What it trusts it then constructs, whatever the object
graph; only afterwards is the loaded object checked to be one of the supported detectors,
and the node arrays of its trees (scikit-learn's ``Tree``, ``KDTree`` and ``BallTree`` do not
check them when loaded, and out-of-range indices crash the process when scoring) are
checked to stay in range. Before anything is unpacked, the archive is checked to stay
within ``MAX_UNPACKED_BYTES`` counting every read its schema asks for (one file may be named
many times); afterwards the detector must score one feature, stay within ``MAX_TREES``,
``MAX_TREE_NODES`` and ``MAX_SAMPLES``, and hold finite parameters. They are scored one model at a time (``DetectorModel.score``);
only the one-class SVM has the vectorized path.
"""

from __future__ import annotations

import json
import re
from collections import Counter
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

from scoring.detectors.base import FitOptions, TrainingError
from scoring.safe_format import MAX_MODEL_FILE_BYTES, MAX_UNPACKED_BYTES, ModelFormatError, check_archive

DETECTORS = (IsolationForest, EllipticEnvelope, LocalOutlierFactor)
# Types skops does not trust by default but the supported detectors are made of.
TRUSTED_TYPES = [
    "sklearn.tree._tree.Tree",
    "sklearn.neighbors._kd_tree.KDTree",
    "sklearn.neighbors._ball_tree.BallTree",
    "sklearn.metrics._dist_metrics.EuclideanDistance64",
]
# Sizes no sensor's detector needs (scikit-learn's defaults: 100 trees of at most 511 nodes).
MAX_TREES = 1_000
MAX_TREE_NODES = 2_000_000  # all trees together
MAX_SAMPLES = 200_000  # training samples a LocalOutlierFactor or EllipticEnvelope keeps
MAX_SCHEMA_BYTES = 16 << 20  # skops' schema.json, parsed as JSON before anything is built


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
        detector = _detector_of(self.estimator)
        if detector is None:
            raise ModelFormatError(
                f"{type(self.estimator).__name__} is not a supported detector: one of "
                f"{', '.join(d.__name__ for d in DETECTORS)} (LocalOutlierFactor with novelty=True), "
                "bare or after a StandardScaler"
            )
        n_features = getattr(detector, "n_features_in_", None)
        if n_features != 1:
            raise ModelFormatError(f"{type(detector).__name__} has {n_features} features; "
                                   "a sensor model scores one value per reading")

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
    _check_skops_archive(data, source)
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
        _check_parameters(estimator, detector)
    except ModelFormatError as exc:
        raise ModelFormatError(f"{source}: {exc}") from None
    except Exception as exc:  # a missing or mistyped attribute
        raise ModelFormatError(f"{source}: malformed {type(detector).__name__} ({type(exc).__name__}: {exc})") from None
    return estimator


def _check_skops_archive(data: bytes, source: str) -> None:
    """Refuse an archive whose unpacking would not stay within ``MAX_UNPACKED_BYTES``.

    skops reads a member each time its schema names it, so the schema is read first
    (bounded by ``MAX_SCHEMA_BYTES``) and every read it asks for is counted.
    """
    if len(data) > MAX_MODEL_FILE_BYTES:
        raise ModelFormatError(f"{source}: {len(data):,} bytes, over the limit of {MAX_MODEL_FILE_BYTES:,} bytes "
                               "for a model file (MAX_MODEL_FILE_BYTES)")
    archive = check_archive(source, data, what="a skops archive")
    try:
        info = archive.getinfo("schema.json")
    except KeyError:
        raise ModelFormatError(f"{source}: not a skops archive (no schema.json)") from None
    if info.file_size > MAX_SCHEMA_BYTES:
        raise ModelFormatError(f"{source}: schema.json is {info.file_size:,} bytes, over the limit of "
                               f"{MAX_SCHEMA_BYTES:,} bytes (MAX_SCHEMA_BYTES)")
    try:
        schema = json.loads(archive.read(info))
    except (ValueError, RecursionError) as exc:
        raise ModelFormatError(f"{source}: schema.json is not JSON ({type(exc).__name__}: {exc})") from None
    reads, stack = Counter(), [schema]
    while stack:  # iterative: the nesting depth comes from the file
        node = stack.pop()
        if isinstance(node, dict):
            if isinstance(node.get("file"), str):
                reads[node["file"]] += 1
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    sizes = {member.filename: member.file_size for member in archive.infolist()}
    total = info.file_size + sum(sizes.get(name, 0) * count for name, count in reads.items())
    if total > MAX_UNPACKED_BYTES:
        raise ModelFormatError(f"{source}: unpacks to {total:,} bytes (its schema reads some members "
                               f"many times), over the limit of {MAX_UNPACKED_BYTES:,} bytes (MAX_UNPACKED_BYTES)")


def _finite(name: str, value) -> None:
    array = np.asarray(value)
    if array.dtype.kind not in "biuf" or not np.isfinite(array).all():
        raise ModelFormatError(f"{name} holds NaN, infinite or non-numeric values")


def _check_parameters(estimator, detector) -> None:
    """One feature, sizes within the limits, finite fitted parameters."""
    kind = type(detector).__name__
    if getattr(detector, "n_features_in_", None) != 1:
        raise ModelFormatError(f"{kind} has {getattr(detector, 'n_features_in_', None)} features; "
                               "a sensor model scores one value per reading")
    if isinstance(estimator, Pipeline) and len(estimator.steps) > 1:
        scaler = estimator.steps[0][1]
        if getattr(scaler, "n_features_in_", None) != 1:
            raise ModelFormatError("the StandardScaler does not take one feature")
        for name in ("mean_", "scale_"):
            if getattr(scaler, name, None) is not None:
                _finite(f"StandardScaler {name}", getattr(scaler, name))
                if np.shape(getattr(scaler, name)) != (1,):
                    raise ModelFormatError(f"StandardScaler {name} is not one value")
    _finite(f"{kind} offset_", detector.offset_)
    if isinstance(detector, IsolationForest):
        trees = [estimator.tree_ for estimator in detector.estimators_]
        if not 1 <= len(trees) <= MAX_TREES:
            raise ModelFormatError(f"IsolationForest has {len(trees)} trees, outside 1..{MAX_TREES} (MAX_TREES)")
        nodes = sum(tree.node_count for tree in trees)
        if nodes > MAX_TREE_NODES:
            raise ModelFormatError(f"IsolationForest has {nodes:,} tree nodes, over {MAX_TREE_NODES:,} (MAX_TREE_NODES)")
        per_tree = (detector._average_path_length_per_tree, detector._decision_path_lengths)
        for i, tree in enumerate(trees):
            _finite(f"IsolationForest tree {i} threshold", tree.threshold)
            _finite(f"IsolationForest tree {i} value", tree.value)
            for lengths in per_tree:
                if np.shape(lengths[i]) != (tree.node_count,):
                    raise ModelFormatError(f"IsolationForest tree {i}: path lengths are not node_count long")
                _finite(f"IsolationForest tree {i} path lengths", lengths[i])
        if any(len(lengths) != len(trees) for lengths in per_tree):
            raise ModelFormatError("IsolationForest path lengths are not one per tree")
    elif isinstance(detector, EllipticEnvelope):
        if len(detector.support_) > MAX_SAMPLES:
            raise ModelFormatError(f"EllipticEnvelope kept {len(detector.support_):,} samples, over {MAX_SAMPLES:,} "
                                   "(MAX_SAMPLES)")
        for name in ("location_", "covariance_", "precision_"):
            _finite(f"EllipticEnvelope {name}", getattr(detector, name))
        if np.shape(detector.location_) != (1,) or np.shape(detector.precision_) != (1, 1):
            raise ModelFormatError("EllipticEnvelope location_/precision_ are not of one feature")
    elif isinstance(detector, LocalOutlierFactor):
        n = int(detector.n_samples_fit_)
        if not 1 <= n <= MAX_SAMPLES:
            raise ModelFormatError(f"LocalOutlierFactor kept {n:,} samples, outside 1..{MAX_SAMPLES:,} (MAX_SAMPLES)")
        if not 1 <= int(detector.n_neighbors_) <= n:
            raise ModelFormatError(f"LocalOutlierFactor n_neighbors_ {detector.n_neighbors_} outside 1..{n}")
        if np.shape(detector._fit_X) != (n, 1) or np.shape(detector._lrd) != (n,) \
                or np.ndim(detector._distances_fit_X_) != 2 or len(detector._distances_fit_X_) != n \
                or np.shape(detector._distances_fit_X_)[1] < detector.n_neighbors_:
            raise ModelFormatError("LocalOutlierFactor arrays do not match n_samples_fit_ and n_neighbors_")
        for name in ("_fit_X", "_lrd", "_distances_fit_X_"):
            _finite(f"LocalOutlierFactor {name}", getattr(detector, name))


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


class _OneModel:
    """A detector scored on its own: its rows in one call to its ``decision_function``."""

    def __init__(self, model: DetectorModel):
        self.model = model

    def decision(self, x: np.ndarray, model: np.ndarray, length: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.model.score(x)


class SkopsKind:
    """Imported scikit-learn detectors (``model_<device>_<sensor>.skops``); not trained by bscore."""

    name = "skops"
    model_type = DetectorModel

    def fit(self, values: np.ndarray, options: FitOptions = FitOptions(), trained_from=None, trained_to=None):
        raise TrainingError("skops models are imported, not trained: train kind 'robust' or 'svm'")

    def to_entry(self, model: DetectorModel) -> tuple[dict[str, np.ndarray], dict]:
        return {"skops": np.frombuffer(dump_detector(model.estimator), dtype=np.uint8)}, {"detector": model.detector}

    def from_entry(self, spec: dict, arrays: dict[str, np.ndarray]) -> DetectorModel:
        return DetectorModel(load_detector(arrays["skops"].tobytes()), spec.get("metadata", {}))

    def compile(self, models: list[DetectorModel]) -> list[tuple[np.ndarray, _OneModel]]:
        return [(np.array([i]), _OneModel(model)) for i, model in enumerate(models)]


KIND = SkopsKind()
