"""The safe bundle format: round trips exactly, carries its metadata, refuses tampering."""

import hashlib
import io
import json

import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn.covariance import EllipticEnvelope
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import OneClassSVM

from scoring.detectors import DetectorModel
from scoring.model_format import (METADATA_KEYS, ModelBundle, ModelFormatError, SensorModel, bundle_from_files,
                                  bundle_to_files, model_metadata)


def fitted(kernel, rng):
    x = rng.normal(5, 2, size=(80, 1))
    svm = OneClassSVM(nu=0.2, kernel=kernel, gamma=0.4, coef0=0.5, degree=2)
    return Pipeline([("scaler", StandardScaler()), ("classifier", svm)]).fit(x)


@pytest.fixture
def bundle():
    rng = np.random.default_rng(0)
    models = {kernel: SensorModel.from_pipeline(fitted(kernel, rng), model_metadata("1.9.1", 80, "2026-01-01T00:00",
                                                                                    "2026-01-01T01:00"))
              for kernel in ("rbf", "linear", "poly", "sigmoid")}
    envelope = EllipticEnvelope(random_state=0).fit(rng.normal(size=(60, 1)))
    models["envelope"] = DetectorModel(envelope, model_metadata("1.9.1", 60))
    return ModelBundle("dev-1", "v1", models, {"note": "test"})


def test_round_trip_is_exact_and_keeps_metadata(bundle):
    files = bundle_to_files(bundle)
    loaded = bundle_from_files(files["params.npz"], files["bundle.json"])
    probe = np.linspace(-5, 15, 50).reshape(-1, 1)

    assert (loaded.device, loaded.version, loaded.metadata) == ("dev-1", "v1", {"note": "test"})
    for sensor, model in bundle.models.items():
        again = loaded.models[sensor]
        assert again.metadata == model.metadata
        assert set(METADATA_KEYS) <= set(again.metadata)
        if isinstance(model, SensorModel):
            for name in ("mean", "scale", "support_vectors", "dual_coef"):
                assert_allclose(getattr(again, name), getattr(model, name), rtol=0, atol=0)
            assert (again.kernel, again.gamma, again.coef0, again.degree, again.intercept) == (
                model.kernel, model.gamma, model.coef0, model.degree, model.intercept)
        else:
            assert_allclose(again.score(probe)[0], model.score(probe)[0], rtol=0, atol=1e-12)
    meta = json.loads(files["bundle.json"])
    assert all(len(spec["sha256"]) == 64 for spec in meta["sensors"].values())
    assert meta["sensors"]["envelope"]["type"] == "skops"


@pytest.mark.parametrize("kernel", ["rbf", "linear", "poly", "sigmoid"])
def test_to_pipeline_is_sklearn_with_the_same_parameters(kernel):
    rng = np.random.default_rng(1)
    original = fitted(kernel, rng)
    rebuilt = SensorModel.from_pipeline(original).to_pipeline()
    probe = rng.normal(5, 6, size=(200, 1))
    assert_allclose(rebuilt.decision_function(probe), original.decision_function(probe), rtol=0, atol=1e-12)
    assert (rebuilt.predict(probe) == original.predict(probe)).all()


def test_tampered_arrays_are_refused(bundle):
    files = bundle_to_files(bundle)
    params = bytearray(files["params.npz"])
    params[len(params) // 2] ^= 0xFF
    with pytest.raises(ModelFormatError, match="params.npz hashes to"):
        bundle_from_files(bytes(params), files["bundle.json"])


def test_changed_model_arrays_with_a_recomputed_archive_hash_are_refused(bundle):
    files = bundle_to_files(bundle)
    with np.load(io.BytesIO(files["params.npz"])) as npz:
        arrays = {name: npz[name] for name in npz.files}
    arrays["rbf/dual_coef"] = arrays["rbf/dual_coef"] * 2
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    meta = json.loads(files["bundle.json"])
    meta["params_sha256"] = hashlib.sha256(buffer.getvalue()).hexdigest()
    with pytest.raises(ModelFormatError, match="sensor rbf's arrays do not match their content hash"):
        bundle_from_files(buffer.getvalue(), json.dumps(meta).encode())


def test_malformed_metadata_and_models_are_refused():
    with pytest.raises(ModelFormatError, match="not JSON"):
        bundle_from_files(b"", b"{")
    with pytest.raises(ModelFormatError, match="kernel 'precomputed'"):
        SensorModel(np.zeros(1), np.ones(1), np.zeros((1, 1)), np.ones(1), 0.0, kernel="precomputed")
    with pytest.raises(ModelFormatError, match="dual_coef shape"):
        SensorModel(np.zeros(1), np.ones(1), np.zeros((2, 1)), np.ones(1), 0.0)


@pytest.mark.parametrize("damage", ["not a zip", "huge header", "json list", "missing spec key"])
def test_malformed_bundles_are_refused_not_crashing(bundle, damage):
    import hashlib
    import io
    import json

    files = bundle_to_files(bundle)
    params, meta = files["params.npz"], json.loads(files["bundle.json"])
    if damage == "not a zip":
        params = b"PK\x03\x04 broken"
    elif damage == "huge header":
        buffer = io.BytesIO()
        np.savez(buffer, x=np.zeros(1))
        params = buffer.getvalue().replace(b"'shape': (1,)", b"'shape': (99999999999,)")
    elif damage == "json list":
        meta = []
    else:
        del meta["sensors"]["rbf"]["kernel"]
    if isinstance(meta, dict):
        meta["params_sha256"] = hashlib.sha256(params).hexdigest()
        for spec in meta["sensors"].values():
            spec.pop("sha256", None)
    with pytest.raises(ModelFormatError):
        bundle_from_files(params, json.dumps(meta).encode())
