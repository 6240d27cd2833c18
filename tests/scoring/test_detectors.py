"""Other detectors through skops: parity with scikit-learn, trusted types only."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from numpy.testing import assert_allclose
from sklearn.covariance import EllipticEnvelope
from sklearn.ensemble import IsolationForest
from sklearn.neighbors import LocalOutlierFactor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from scoring.detectors import DetectorModel, dump_detector, load_detector
from scoring.engine import score_shard
from scoring.model_format import ModelBundle, ModelFormatError

DETECTORS = {
    "isolation_forest": lambda: IsolationForest(n_estimators=15, random_state=0),
    "elliptic_envelope": lambda: EllipticEnvelope(random_state=0),
    "local_outlier_factor": lambda: LocalOutlierFactor(n_neighbors=15, novelty=True),
}


@pytest.mark.parametrize("name", DETECTORS)
@pytest.mark.parametrize("scaled", [False, True])
def test_detectors_round_trip_and_score_as_sklearn(name, scaled):
    rng = np.random.default_rng(len(name))
    detector = DETECTORS[name]()
    estimator = Pipeline([("scaler", StandardScaler()), ("detector", detector)]) if scaled else detector
    estimator.fit(rng.normal(30, 4, size=(150, 1)))
    loaded = load_detector(dump_detector(estimator))
    values = rng.normal(30, 12, 400)
    rows = {"ts": np.arange(400), "device": "a", "sensor": "1", "value": values}
    predictions = score_shard(pd.DataFrame(rows), {"a": ModelBundle("a", "v", {"1": DetectorModel(loaded)})}).predictions

    expected = estimator.decision_function(values.reshape(-1, 1))
    assert_allclose(predictions["score"], expected, rtol=0, atol=1e-9)
    assert (predictions["is_anomaly"].to_numpy() == (estimator.predict(values.reshape(-1, 1)) == -1)).all()


def test_untrusted_skops_type_is_refused(tmp_path):
    marker = tmp_path / "ran"
    hostile = Pipeline([("call", FunctionTransformer(os.system, kw_args={"command": f"touch {marker}"})),
                        ("detector", EllipticEnvelope())])
    with pytest.raises(ModelFormatError, match=r"refused untrusted type\(s\) .*system"):
        load_detector(sio.dumps(hostile), source="model_x_1.skops")
    assert not marker.exists()


def test_unsupported_estimators_are_refused():
    rng = np.random.default_rng(0)
    lof = LocalOutlierFactor(n_neighbors=5).fit(rng.normal(size=(30, 1)))  # novelty=False cannot score new data
    with pytest.raises(ModelFormatError, match="not a supported detector"):
        load_detector(sio.dumps(lof))
    with pytest.raises(ModelFormatError, match="not a supported detector"):
        DetectorModel(StandardScaler().fit(rng.normal(size=(30, 1))))
    with pytest.raises(ModelFormatError, match="not a skops archive"):
        load_detector(b"garbage")


def fitted(detector):
    return detector.fit(np.random.default_rng(3).normal(30, 4, size=(200, 1)))


def crafted_forest(change):
    """An IsolationForest whose first tree's node array was changed by ``change(nodes)``."""
    from sklearn.tree._tree import Tree

    forest = fitted(IsolationForest(n_estimators=3, random_state=0))
    old = forest.estimators_[0].tree_
    state = old.__getstate__()
    state["nodes"] = state["nodes"].copy()
    change(state)
    tree = Tree(old.n_features, np.array(old.n_classes), old.n_outputs)
    tree.__setstate__(state)
    forest.estimators_[0].tree_ = tree
    return forest


def set_node(field, node, value):
    def change(state):
        state["nodes"][field][node] = value
    return change


def first_split(state):
    return int(np.flatnonzero(state["nodes"]["left_child"] != -1)[0])


CRAFTED_FORESTS = {
    "left child far out of range": (set_node("left_child", 0, 10**9), "children_left/children_right outside"),
    "right child far below -1": (set_node("right_child", 0, -(10**9)), "children_left/children_right outside"),
    "feature out of range": (set_node("feature", 0, 10**9), "feature outside"),
    "child loops to its parent": (set_node("left_child", 0, 0), "a child does not come after its parent"),
    "half a leaf": (lambda state: state["nodes"]["right_child"].__setitem__(
        int(np.flatnonzero(state["nodes"]["left_child"] == -1)[0]), 1), "neither a leaf"),
}


def crafted_trees(kind, change):
    """A LocalOutlierFactor whose KDTree/BallTree state was changed by ``change(state)``."""
    lof = fitted(LocalOutlierFactor(n_neighbors=5, novelty=True, algorithm=kind, leaf_size=5))
    state = list(lof._tree.__getstate__())
    state[1], state[2] = state[1].copy(), state[2].copy()
    change(state)
    lof._tree.__setstate__(tuple(state))
    return lof


def set_state(index, value):
    def change(state):
        state[index] = value
    return change


def set_item(index, field, position, value):
    def change(state):
        if field is None:
            state[index][position] = value
        else:
            state[index][field][position] = value
    return change


CRAFTED_TREES = {
    "idx_array out of range": (set_item(1, None, 0, 10**9), "idx_array is not 200 indices"),
    "idx_end beyond the data": (set_item(2, "idx_end", 0, 10**9), "idx_start/idx_end outside"),
    "negative idx_start": (set_item(2, "idx_start", 0, -(10**6)), "idx_start/idx_end outside"),
    "last level not a leaf": (lambda state: state[2]["is_leaf"].__setitem__(-1, 0), "without children is not a leaf"),
    "too many nodes": (set_state(6, 10**6), "node_data is not n_nodes"),
    "zero leaf_size": (set_state(4, 0), "leaf_size 0 is not positive"),
}

SCORE_CRAFTED = """
import sys
import numpy as np
from pathlib import Path
from scoring.detectors import DetectorModel, load_detector
from scoring.model_format import ModelFormatError

for path in sorted(Path(sys.argv[1]).glob("*.skops")):
    try:
        model = DetectorModel(load_detector(path.read_bytes(), source=path.name))
    except ModelFormatError as exc:
        print("refused", exc, flush=True)
        continue
    model.score(np.linspace(-100, 100, 2000))  # out-of-range node indices crash here
    print("scored", path.name, flush=True)
"""


@pytest.mark.slow  # scores in a subprocess
def test_crafted_tree_node_arrays_are_refused_without_crashing(tmp_path):
    expected = {}
    for i, (name, (change, message)) in enumerate(CRAFTED_FORESTS.items()):
        (tmp_path / f"forest_{i}.skops").write_bytes(sio.dumps(crafted_forest(change)))
        expected[f"forest_{i}.skops"] = message
    for kind in ("kd_tree", "ball_tree"):
        for i, (name, (change, message)) in enumerate(CRAFTED_TREES.items()):
            (tmp_path / f"lof_{kind}_{i}.skops").write_bytes(sio.dumps(crafted_trees(kind, change)))
            expected[f"lof_{kind}_{i}.skops"] = message
    (tmp_path / "lof_ball_tree_bounds.skops").write_bytes(sio.dumps(crafted_trees(
        "ball_tree", set_state(3, np.zeros((1, 1, 1))))))
    expected["lof_ball_tree_bounds.skops"] = "node_bounds of shape"

    # Scored in a subprocess: before these checks, loading succeeded and scoring segfaulted
    # (or looped forever on the cycle).
    run = subprocess.run([sys.executable, "-c", SCORE_CRAFTED, str(tmp_path)], capture_output=True, text=True,
                         timeout=120, cwd=Path(__file__).resolve().parents[2])
    assert run.returncode == 0, (run.returncode, run.stdout, run.stderr[-2000:])
    lines = run.stdout.splitlines()
    assert len(lines) == len(expected)
    for line in lines:
        assert line.startswith("refused "), line
        source = line.split()[1].rstrip(":")
        assert expected[source] in line, line


def test_sound_trees_still_load():
    for kind in ("kd_tree", "ball_tree", "brute"):
        lof = fitted(LocalOutlierFactor(n_neighbors=5, novelty=True, algorithm=kind, leaf_size=5))
        load_detector(sio.dumps(lof))
    load_detector(sio.dumps(fitted(IsolationForest(n_estimators=5, max_samples=200, random_state=0))))


def test_any_skops_failure_is_a_model_format_error():
    import io
    import zipfile

    data = sio.dumps(fitted(IsolationForest(n_estimators=2, random_state=0)))
    source, out = zipfile.ZipFile(io.BytesIO(data)), io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name in source.namelist():
            content = source.read(name)
            if name.endswith(".npy") and np.load(io.BytesIO(content)).dtype.names:  # a Tree's nodes
                buffer = io.BytesIO()
                np.save(buffer, np.zeros(3))
                content = buffer.getvalue()
            archive.writestr(name, content)
    # The types are all trusted; constructing the Tree from the wrong array fails inside skops.
    with pytest.raises(ModelFormatError, match="model_x_1.skops: not a skops archive"):
        load_detector(out.getvalue(), source="model_x_1.skops")


@pytest.mark.parametrize("detector, samples", [
    (lambda: IsolationForest(n_estimators=5, random_state=0), None),  # keeps only its subsample size
    (lambda: LocalOutlierFactor(n_neighbors=5, novelty=True), 200),
    (lambda: EllipticEnvelope(random_state=0), 200),  # support_ is a mask over the training samples
])
def test_training_samples_of_one_step_pipelines(detector, samples):
    from scoring.detectors import training_samples

    pipeline = fitted(Pipeline([("d", detector())]))
    assert DetectorModel(pipeline).detector == type(pipeline.steps[0][1]).__name__
    assert training_samples(pipeline) == samples
    assert training_samples(pipeline.steps[0][1]) == samples


def test_detector_sizes_and_parameters_are_bounded(monkeypatch):
    from sklearn.ensemble import IsolationForest

    from scoring.detectors import sklearn_detectors as detectors

    x = np.random.default_rng(0).normal(size=(60, 1))
    forest = sio.dumps(IsolationForest(n_estimators=10, random_state=0).fit(x))
    monkeypatch.setattr(detectors, "MAX_TREES", 5)
    with pytest.raises(ModelFormatError, match=r"IsolationForest has 10 trees, outside 1..5 \(MAX_TREES\)"):
        load_detector(forest)
    monkeypatch.setattr(detectors, "MAX_TREES", 1000)
    monkeypatch.setattr(detectors, "MAX_TREE_NODES", 20)
    with pytest.raises(ModelFormatError, match=r"over 20 \(MAX_TREE_NODES\)"):
        load_detector(forest)
    lof = LocalOutlierFactor(n_neighbors=5, novelty=True).fit(x)
    lof.offset_ = float("nan")
    with pytest.raises(ModelFormatError, match="offset_ holds NaN"):
        load_detector(sio.dumps(lof))
