"""The restricted unpickler: the reference's 0.19.2 pickles convert exactly; nothing else runs."""

import os
import pickle
import subprocess

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import OneClassSVM

from scoring.engine import decision_values
from scoring.legacy import LegacyModelError, load_pickled_state, read_legacy_model

LEGACY = [f"model_{d}_{s}" for d in (1, 2, 3) for s in (1, 2, 3, 4, 5)]


@pytest.mark.parametrize("name", LEGACY)
def test_reference_models_match_sklearn_on_reference_data(reference_dir, name):
    _, device, sensor = name.split("_")
    data = pd.read_csv(reference_dir / "sensor_data.csv")
    x = data.loc[(data["Device"] == int(device)) & (data["Sensor"] == int(sensor)), "Value"].to_numpy()

    model = read_legacy_model(reference_dir / name)
    pipeline = model.to_pipeline()  # scikit-learn's own decision_function and predict
    got = decision_values(x, np.zeros(len(x), dtype=int), [model])

    assert len(x) > 1000
    assert model.metadata["sklearn_version"] == "0.19.2" and model.metadata["n_samples"] > 200
    assert (model.kernel, model.gamma) == ("rbf", 0.01)
    assert_allclose(got, pipeline.decision_function(x.reshape(-1, 1)), rtol=0, atol=1e-9)
    decided = np.abs(got) > 1e-9
    assert ((got <= 0) == (pipeline.predict(x.reshape(-1, 1)) == -1))[decided].all()


def test_reference_pickle_state_is_inert(reference_dir):
    state = load_pickled_state((reference_dir / "model_1_1").read_bytes())
    assert type(state).__name__ == "PickledPipeline"
    assert not hasattr(state, "predict")


class Payload:
    def __init__(self, call, args):
        self.call, self.args = call, args

    def __reduce__(self):
        return self.call, self.args


def payloads(marker):
    return {
        "posix.system": Payload(os.system, (f"touch {marker}",)),
        "builtins.eval": Payload(eval, (f"open({str(marker)!r}, 'w').close()",)),
        "subprocess.check_call": Payload(subprocess.check_call, (["touch", str(marker)],)),
    }


@pytest.mark.parametrize("refused", ["posix.system", "builtins.eval", "subprocess.check_call"])
def test_malicious_pickle_is_refused_and_nothing_runs(tmp_path, refused):
    marker = tmp_path / "payload-ran"
    # The payload hides inside an otherwise genuine model pipeline, after admitted globals.
    pipeline = Pipeline([("scaler", StandardScaler()), ("classifier", OneClassSVM())]).fit(np.ones((5, 1)))
    path = tmp_path / "model_1_1"
    path.write_bytes(pickle.dumps([pipeline, payloads(marker)[refused]]))

    with pytest.raises(LegacyModelError, match=rf"{path}: refused global {refused}"):
        read_legacy_model(path)
    assert not marker.exists()


def test_object_arrays_and_other_objects_are_refused(tmp_path):
    path = tmp_path / "model_a_1"
    path.write_bytes(pickle.dumps(np.array([None, 1], dtype=object)))
    with pytest.raises(LegacyModelError, match="object dtype"):
        read_legacy_model(path)
    path.write_bytes(pickle.dumps({"steps": []}))
    with pytest.raises(LegacyModelError, match="not a model pipeline"):
        read_legacy_model(path)
    path.write_bytes(b"not a pickle")
    with pytest.raises(LegacyModelError, match="not a readable model pickle"):
        read_legacy_model(path)


@pytest.mark.parametrize("kernel", ["rbf", "linear", "poly", "sigmoid"])
@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_current_sklearn_pickles_convert_exactly(tmp_path, kernel, protocol):
    rng = np.random.default_rng(protocol)
    x = rng.normal(20, 3, size=(150, 1))
    pipeline = Pipeline([("scaler", StandardScaler()),
                         ("classifier", OneClassSVM(nu=0.1, kernel=kernel, gamma=0.5, coef0=0.3))]).fit(x)
    path = tmp_path / "model_7_2"
    path.write_bytes(pickle.dumps(pipeline, protocol=protocol))

    model = read_legacy_model(path)

    probe = rng.normal(20, 8, 300)
    assert_allclose(decision_values(probe, np.zeros(300, dtype=int), [model]),
                    pipeline.decision_function(probe.reshape(-1, 1)), rtol=0, atol=1e-9)
    assert model.metadata["n_samples"] == 150
