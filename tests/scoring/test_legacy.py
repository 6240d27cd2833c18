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


class Reduce:
    """Pickles as ``call(*args)``, then BUILD with ``state`` when given: a hand-made pickle."""

    def __init__(self, call, args, state=None):
        self.value = (call, args) if state is None else (call, args, state)

    def __reduce__(self):
        return self.value


def test_numpy_ndarray_cannot_be_called_directly():
    # np.ndarray(shape, dtype, buffer, offset, strides) would give 8 bytes a (1e9, 1) view
    # with zero strides, and would take any dtype (object arrays) without the dtype check.
    huge_view = pickle.dumps(Reduce(np.ndarray, ((10**9, 1), "f8", b"\0" * 8, 0, (0, 0))), protocol=2)
    with pytest.raises(LegacyModelError, match="not callable"):
        load_pickled_state(huge_view)


def test_array_reconstruction_takes_no_shape_from_the_pickle():
    from numpy._core.multiarray import _reconstruct

    with pytest.raises(LegacyModelError, match=r"shape \(1000,\)"):
        load_pickled_state(pickle.dumps(Reduce(_reconstruct, (np.ndarray, (1000,), b"b")), protocol=2))
    # numpy's own (0,) start: ndarray.__setstate__ then refuses data shorter than the shape.
    short = Reduce(_reconstruct, (np.ndarray, (0,), b"b"), (1, (10**9, 1), np.dtype("f8"), False, b"\0" * 8))
    with pytest.raises(LegacyModelError, match="not a readable model pickle"):
        load_pickled_state(pickle.dumps(short, protocol=2))


OBJECT_FIELD_STATE = np.dtype([("a", "O")]).__reduce__()[2]


@pytest.mark.parametrize("pickled", [
    pickle.dumps(np.zeros(3, dtype=[("a", "f8"), ("b", "i4")])),  # structured: V12, then fields via BUILD
    pickle.dumps(np.dtype(("f8", (2,)))),  # subarray
    pickle.dumps(np.array(["text"])),  # unicode
    pickle.dumps(Reduce(np.dtype, ("V8", False, True), OBJECT_FIELD_STATE)),  # void made an object dtype
    pickle.dumps(Reduce(np.dtype, ("f8", False, True), (3, "<", None, None, None, -1, -1, 0x3F))),  # object flags
], ids=["structured", "subarray", "unicode", "void-to-object", "float-with-object-flags"])
def test_only_plain_bool_int_float_dtypes(pickled):
    with pytest.raises(LegacyModelError, match="refused dtype"):
        load_pickled_state(pickled)


def test_plain_dtypes_still_load():
    for dtype in ("?", "i1", "<i4", ">i8", "u2", "<f4", ">f8"):
        array = np.arange(6).astype(dtype).reshape(2, 3)
        for protocol in (2, 5):
            loaded = load_pickled_state(pickle.dumps(array, protocol=protocol))
            expected = pickle.loads(pickle.dumps(array, protocol=protocol))  # numpy may swap to native order
            assert loaded.dtype == expected.dtype and (loaded == array).all()


def test_build_cannot_change_a_holder_class():
    from scoring.legacy import PickledPipeline

    before = dict(vars(PickledPipeline))
    # GLOBAL Pipeline; state (None, {"__init__": bytes}); BUILD: setattr on the class itself.
    on_class = (b"\x80\x02csklearn.pipeline\nPipeline\nN}X\x08\x00\x00\x00__init__"
                b"c__builtin__\nbytes\ns\x86b.")
    try:
        with pytest.raises(LegacyModelError):
            load_pickled_state(on_class)
        assert dict(vars(PickledPipeline)) == before
    finally:
        for name in set(vars(PickledPipeline)) - set(before):
            delattr(PickledPipeline, name)
    # An instance takes a dict with str keys only.
    with pytest.raises(LegacyModelError, match="dict with str keys"):
        load_pickled_state(pickle.dumps(Reduce(Pipeline, (), (None, {"steps": []})), protocol=2))
    with pytest.raises(LegacyModelError, match="dict with str keys"):
        load_pickled_state(pickle.dumps(Reduce(Pipeline, (), {1: 2}), protocol=2))


def test_build_is_refused_on_admitted_functions():
    from scoring import legacy

    for name, function in [("scalar", legacy._scalar), ("dtype", legacy._dtype)]:
        module = "numpy._core.multiarray" if name == "scalar" else "numpy"
        data = (f"\x80\x02c{module}\n{name}\nN}}X\x0c\x00\x00\x00__defaults__N\x85s\x86b.").encode("latin-1")
        defaults = function.__defaults__
        try:
            with pytest.raises(LegacyModelError, match="refused to set the state"):
                load_pickled_state(data)
            assert function.__defaults__ == defaults
        finally:
            function.__defaults__ = defaults


def test_malformed_svm_state_is_a_legacy_model_error(tmp_path):
    pipeline = Pipeline([("scaler", StandardScaler()), ("classifier", OneClassSVM())]).fit(np.ones((5, 1)))
    pipeline.steps[1][1]._intercept_ = np.array([])  # np.ravel(...)[0] raises IndexError
    path = tmp_path / "model_1_1"
    path.write_bytes(pickle.dumps(pipeline))
    with pytest.raises(LegacyModelError, match="incomplete one-class SVM state"):
        read_legacy_model(path)
    path.write_bytes(pickle.dumps(Reduce(Pipeline, (), {"steps": 5}), protocol=2))
    with pytest.raises(LegacyModelError, match="steps must be"):
        read_legacy_model(path)
