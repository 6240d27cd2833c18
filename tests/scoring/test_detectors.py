"""Other detectors through skops: parity with scikit-learn, trusted types only."""

import os

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
