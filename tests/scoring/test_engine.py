"""The batch scorer against scikit-learn's own decision_function and predict, on random fleets."""

import zlib

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose
from sklearn.ensemble import IsolationForest
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import OneClassSVM

from scoring.detectors import DetectorModel
from scoring.engine import BundleModels, decision_values, score_shard
from scoring.model_format import ModelBundle, SensorModel

KERNELS = ["rbf", "linear", "poly", "sigmoid"]


def random_pipeline(rng, kernel):
    x = rng.normal(rng.uniform(-50, 50), rng.uniform(0.1, 10), size=(int(rng.integers(5, 120)), 1))
    svm = OneClassSVM(nu=rng.uniform(0.01, 0.5), kernel=kernel, gamma=rng.uniform(0.01, 2),
                      coef0=rng.uniform(-1, 1), degree=int(rng.integers(1, 5)))
    return Pipeline([("scaler", StandardScaler()), ("classifier", svm)]).fit(x)


def fleet(rng, kernels, devices, sensors):
    """Fitted pipelines keyed by (device, sensor) and the same models as bundles."""
    pipelines, bundles = {}, {}
    for d in range(devices):
        models = {}
        for s in range(sensors):
            pipeline = random_pipeline(rng, kernels[(d * sensors + s) % len(kernels)])
            pipelines[(f"d{d}", f"s{s}")] = pipeline
            models[f"s{s}"] = SensorModel.from_pipeline(pipeline)
        bundles[f"d{d}"] = ModelBundle(f"d{d}", f"v{d}", models)
    return pipelines, bundles


def readings(rng, keys, rows_per_model, order):
    lengths = np.full(len(keys), rows_per_model) if order != "ragged" else rng.integers(1, 2 * rows_per_model, len(keys))
    frame = pd.DataFrame({
        "device": np.repeat([d for d, _ in keys], lengths),
        "sensor": np.repeat([s for _, s in keys], lengths),
        "value": rng.normal(0, 60, int(lengths.sum())),
    })
    frame["ts"] = pd.Timestamp("2026-01-01") + pd.to_timedelta(np.arange(len(frame)), unit="s")
    if order == "shuffled":
        frame = frame.sample(frac=1.0, random_state=int(rng.integers(1000))).reset_index(drop=True)
    return frame[["ts", "device", "sensor", "value"]]


def expected(frame, pipelines):
    decision, label = np.empty(len(frame)), np.empty(len(frame), dtype=int)
    for key, index in frame.groupby(["device", "sensor"]).indices.items():
        x = frame["value"].to_numpy()[index].reshape(-1, 1)
        decision[index] = pipelines[key].decision_function(x)
        label[index] = pipelines[key].predict(x)
    return decision, label


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("devices,sensors,rows_per_model,order", [
    (1, 1, 50, "sorted"), (7, 3, 40, "sorted"), (5, 4, 30, "shuffled"), (6, 2, 25, "ragged")])
def test_score_shard_matches_sklearn(kernel, devices, sensors, rows_per_model, order):
    rng = np.random.default_rng(zlib.crc32(f"{kernel}-{devices}-{order}".encode()))
    pipelines, bundles = fleet(rng, [kernel], devices, sensors)
    frame = readings(rng, list(pipelines), rows_per_model, order)
    decision, label = expected(frame, pipelines)

    result = score_shard(frame, bundles)

    predictions = result.predictions
    assert result.missing_models.empty
    assert list(predictions.columns) == ["ts", "device", "sensor", "value", "score", "is_anomaly", "model_version"]
    assert_allclose(predictions["score"], decision, rtol=0, atol=1e-9)
    decided = np.abs(decision) > 1e-9
    assert (predictions["is_anomaly"].to_numpy() == (label == -1))[decided].all()
    assert (predictions["ts"].to_numpy() == frame["ts"].to_numpy()).all()
    assert list(predictions["model_version"].astype(str)) == [bundles[d].version for d in frame["device"]]


def test_mixed_kernels_categorical_columns_and_wide_models():
    rng = np.random.default_rng(3)
    pipelines, bundles = fleet(rng, KERNELS, 6, 4)
    wide = Pipeline([("scaler", StandardScaler()), ("classifier", OneClassSVM(nu=0.6, gamma=0.3))])
    pipelines[("d0", "s0")] = wide.fit(rng.normal(size=(200, 1)))  # over 16 vectors: a group of its own
    models = {**bundles["d0"].models, "s0": SensorModel.from_pipeline(wide)}
    bundles["d0"] = ModelBundle("d0", "v0", models)
    frame = readings(rng, list(pipelines), 20, "shuffled").astype({"device": "category", "sensor": "category"})
    decision, _ = expected(frame, pipelines)

    compiled = BundleModels(bundles)
    assert len(compiled.compiled.groups) > len(KERNELS)
    assert_allclose(score_shard(frame, compiled).predictions["score"], decision, rtol=0, atol=1e-9)
    assert_allclose(score_shard(frame, bundles, threads=1).predictions["score"], decision, rtol=0, atol=1e-9)


def test_rows_without_a_model_are_reported_not_dropped_silently():
    rng = np.random.default_rng(5)
    pipelines, bundles = fleet(rng, ["rbf"], 2, 2)
    keys = list(pipelines) + [("d0", "s9"), ("d7", "s0")]
    frame = readings(rng, keys, 10, "shuffled")
    del bundles["d1"]
    anonymous = frame.index[(frame["device"] == "d0") & (frame["sensor"] == "s0")][:3]
    frame.loc[anonymous, "device"] = None  # readings without a device are reported too

    result = score_shard(frame, bundles)

    missing = result.missing_models.fillna({"device": "?"}).sort_values(["device", "sensor"])
    assert list(map(tuple, missing[["device", "sensor"]].to_numpy().tolist())) == [
        ("?", "s0"), ("d0", "s9"), ("d1", "s0"), ("d1", "s1"), ("d7", "s0")]
    assert missing["rows"].tolist() == [3, 10, 10, 10, 10]
    scored = frame[(frame["device"] == "d0") & frame["sensor"].isin(["s0", "s1"])]
    assert len(result.predictions) == len(scored) == 17
    assert set(result.predictions["sensor"]) == {"s0", "s1"} and set(result.predictions["device"]) == {"d0"}
    decision, _ = expected(scored, pipelines)
    assert_allclose(result.predictions["score"], decision, rtol=0, atol=1e-9)


def test_detector_models_scored_beside_svms():
    rng = np.random.default_rng(8)
    pipelines, bundles = fleet(rng, ["rbf"], 2, 2)
    forest = IsolationForest(n_estimators=10, random_state=0).fit(rng.normal(size=(100, 1)))
    pipelines[("d1", "s2")] = forest
    bundles["d1"] = ModelBundle("d1", "v1", {**bundles["d1"].models, "s2": DetectorModel(forest)})
    frame = readings(rng, list(pipelines), 30, "shuffled")
    decision, label = expected(frame, pipelines)

    predictions = score_shard(frame, bundles).predictions

    assert_allclose(predictions["score"], decision, rtol=0, atol=1e-9)
    assert (predictions["is_anomaly"].to_numpy() == (label == -1)).all()


def test_decision_values_and_empty_shards():
    rng = np.random.default_rng(9)
    pipeline = random_pipeline(rng, "rbf")
    x = rng.normal(size=40)
    assert_allclose(decision_values(x, np.zeros(40, dtype=int), [SensorModel.from_pipeline(pipeline)]),
                    pipeline.decision_function(x.reshape(-1, 1)), rtol=0, atol=1e-9)
    empty = readings(rng, [], 1, "sorted")
    result = score_shard(empty, {})
    assert result.predictions.empty and result.missing_models.empty


@pytest.mark.parametrize("bundles", [{}, "other devices only"])
def test_a_shard_of_devices_without_models_is_reported(bundles):
    rng = np.random.default_rng(8)
    pipelines, fitted = fleet(rng, ["rbf"], 2, 2)
    frame = readings(rng, [("new1", "s0"), ("new2", "s1")], 10, "sorted")
    result = score_shard(frame, {} if bundles == {} else fitted)
    assert result.predictions.empty
    assert sorted(result.missing_models["device"]) == ["new1", "new2"]
    assert result.missing_models["rows"].sum() == 20


# One device's model never takes the shard down (issue 11, case 9).

def _windows(devices, sensors=("1", "2"), n=50, seed=0):
    rng = np.random.default_rng(seed)
    keys = [(d, s) for d in devices for s in sensors]
    return pd.DataFrame({
        "ts": np.tile(pd.date_range("2026-03-01T01:00:05", periods=n, freq="5s"), len(keys)),
        "device": np.repeat([d for d, _ in keys], n), "sensor": np.repeat([s for _, s in keys], n),
        "value": rng.uniform(10, 15, n * len(keys)),
    })


def _bundle(device, **models):
    from tests.forged_bundles import good_model

    return ModelBundle(device, f"{device}-v1", {"1": good_model(), "2": good_model(seed=1), **models})


def _overflowing_poly():
    """Finite, valid parameters whose polynomial overflows to infinity on ordinary readings."""
    return SensorModel(mean=np.array([0.0]), scale=np.array([1e-300]), support_vectors=np.ones((1, 1)),
                       dual_coef=np.ones(1), intercept=0.0, kernel="poly", gamma=1.0, coef0=0.0, degree=10)


class _BrokenDetector(DetectorModel):
    """A loaded detector whose scoring raises (as a damaged tree can)."""

    def __init__(self):
        object.__setattr__(self, "estimator", None)
        object.__setattr__(self, "metadata", {})

    def score(self, values):
        raise RuntimeError("tree node out of range")


def _unvalidated(model, **values):
    """A model whose fields were changed after validation (as unpickling could)."""
    for name, value in values.items():
        object.__setattr__(model, name, value)
    return model


@pytest.mark.parametrize("bad, reason", [
    (_overflowing_poly, "gave non-finite scores for 50 of 50 windows"),
    (lambda: _unvalidated(SensorModel.from_pipeline(random_pipeline(np.random.default_rng(1), "rbf")),
                          intercept=float("nan")), "gave non-finite scores"),
    (_BrokenDetector, "failed to score: RuntimeError: tree node out of range"),
    (lambda: _unvalidated(SensorModel.from_pipeline(random_pipeline(np.random.default_rng(1), "rbf")),
                          support_vectors=np.zeros((3, 2))), "model cannot be scored: ValueError"),
], ids=["overflowing poly", "NaN intercept", "raising detector", "two features"])
def test_a_device_whose_model_fails_is_refused_and_the_shard_is_scored(bad, reason):
    bundles = {d: _bundle(d) for d in ("a", "c")} | {"b": _bundle("b", **{"2": bad()})}
    rows = _windows(["a", "b", "c"])

    scores = score_shard(rows, bundles)

    assert scores.refused["device"].tolist() == ["b"]
    assert scores.refused["reason"].iloc[0].startswith("sensor 2: ") and reason in scores.refused["reason"].iloc[0]
    assert sorted(scores.predictions["device"].unique()) == ["a", "c"] and len(scores.predictions) == 200
    assert np.isfinite(scores.predictions["score"]).all() and scores.missing_models.empty
    clean = score_shard(rows[rows["device"] != "b"], {d: bundles[d] for d in ("a", "c")}).predictions
    pd.testing.assert_frame_equal(scores.predictions.reset_index(drop=True).astype({"model_version": str}),
                                  clean.reset_index(drop=True).astype({"model_version": str}))


def test_a_clean_shard_has_no_refusals():
    bundles = {d: _bundle(d) for d in ("a", "b")}
    rows = _windows(["a", "b", "z"])  # z has no model: missing, not refused

    scores = score_shard(rows, bundles)

    assert scores.refused.empty and list(scores.refused.columns) == ["device", "reason"]
    assert scores.missing_models["device"].unique().tolist() == ["z"]
