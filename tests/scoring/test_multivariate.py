"""The multivariate device model: exact against plain numpy, calibrated to its budget, sound on
constant sensors, stored in the bundle (and bundles from before it still load), and the device
verdict it gives."""

import json

import numpy as np
import pandas as pd
import pytest

from scoring.detectors import FitOptions, TrainingError
from scoring.detectors.multivariate import VARIANCE_KEPT, fit_device
from scoring.model_format import ModelBundle, ModelFormatError, bundle_from_files, bundle_to_files
from scoring.training import train_device_bundle
from scoring.verdicts import multivariate_verdicts, parse_contributions

SENSORS = ["flow", "current", "pressure", "temp"]


def correlated(n: int, seed: int = 0) -> np.ndarray:
    """Four sensors driven by two hidden factors, with noise, at different scales."""
    rng = np.random.default_rng(seed)
    factors = rng.normal(size=(n, 2))
    mixing = np.array([[1.0, 0.2], [0.8, -0.5], [0.1, 1.0], [0.5, 0.5]])
    return (factors @ mixing.T + 0.1 * rng.normal(size=(n, 4))) * [1, 10, 100, 0.1] + [5, 50, 500, 20]


def plain_statistics(train: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """SPE and T² of ``x`` by the textbook: scale by median and IQR / 1.349, eigendecompose the
    covariance of the scaled training data, keep the fewest eigenvectors explaining 95 %."""
    center = np.median(train, axis=0)
    scale = (np.percentile(train, 75, axis=0) - np.percentile(train, 25, axis=0)) / 1.349
    z_train = (train - center) / scale
    mean = z_train.mean(axis=0)
    eigenvalues, eigenvectors = np.linalg.eigh(np.cov(z_train - mean, rowvar=False))
    eigenvalues, eigenvectors = eigenvalues[::-1], eigenvectors[:, ::-1]
    k = int(np.argmax(np.cumsum(eigenvalues) / eigenvalues.sum() >= VARIANCE_KEPT)) + 1
    k = min(k, train.shape[1] - 1)
    z = (x - center) / scale - mean
    t = z @ eigenvectors[:, :k]
    residual = z - t @ eigenvectors[:, :k].T
    return (residual ** 2).sum(axis=1), (t ** 2 / eigenvalues[:k]).sum(axis=1)


def test_spe_and_t2_equal_the_textbook_computation():
    train, test = correlated(2000), correlated(500, seed=1)
    test[::50] += [0, 30, 0, 0]  # break the correlation now and then
    model = fit_device(train, SENSORS)
    spe, t2, squared = model.statistics(test)
    expected_spe, expected_t2 = plain_statistics(train, test)
    assert len(model.variances) == 2  # two hidden factors
    np.testing.assert_allclose(spe, expected_spe, rtol=1e-9)
    np.testing.assert_allclose(t2, expected_t2, rtol=1e-9)
    np.testing.assert_allclose(squared.sum(axis=1), spe, rtol=1e-12)
    score, flags, shares = model.score(test)
    np.testing.assert_allclose(score, np.maximum(spe / model.spe_threshold, t2 / model.t2_threshold))
    assert (flags == (score > 1)).all() and flags[::50].all()
    assert (shares[::50].argmax(axis=1) == SENSORS.index("current")).all()  # the sensor that broke it
    np.testing.assert_allclose(shares.sum(axis=1), 1.0)


@pytest.mark.parametrize("budget", [0.005, 0.02])
def test_a_clean_series_flags_close_to_the_budget(budget):
    model = fit_device(correlated(20_000), SENSORS, FitOptions(false_alarm_rate=budget))
    rate = model.score(correlated(20_000, seed=7))[1].mean()
    assert budget / 3 <= rate <= 2 * budget


def test_a_constant_sensor_is_dropped_by_name_and_all_constant_is_refused():
    train = correlated(1000)
    train[:, 2] = 0.2  # its standard deviation rounds to 3e-17, not 0
    model = fit_device(train, SENSORS)
    assert model.sensors == ("flow", "current", "temp") and model.dropped == ("pressure",)
    assert model.metadata["dropped"] == ["pressure"]
    assert np.isfinite(model.score(np.delete(train, 2, axis=1))[0]).all()
    with pytest.raises(TrainingError, match="every sensor .*flow, current.* is constant"):
        fit_device(np.ones((100, 2)), ["flow", "current"])
    with pytest.raises(TrainingError, match="NaN or infinite"):
        fit_device(np.full((100, 2), np.nan), ["flow", "current"])


def device_windows(n: int = 720, seed: int = 0, constant: bool = True) -> pd.DataFrame:
    ts = pd.date_range("2026-01-01 00:00:05", periods=n, freq="5s")
    x = correlated(n, seed)
    frames = [pd.DataFrame({"ts": ts, "sensor": s, "value": x[:, j]}) for j, s in enumerate(SENSORS)]
    if constant:
        frames.append(pd.DataFrame({"ts": ts, "sensor": "stuck", "value": 3.0}))
    return pd.concat(frames, ignore_index=True)


def test_the_device_model_round_trips_in_the_bundle_and_is_part_of_its_hash():
    bundle, refused = train_device_bundle("pump-1", device_windows())
    assert not refused and bundle.device_model.dropped == ("stuck",)
    assert bundle.metadata["device_model_dropped"] == ["stuck"]
    files = bundle_to_files(bundle)
    meta = json.loads(files["bundle.json"])
    assert meta["device_model"]["type"] == "device_model" and meta["device_model"]["dropped"] == ["stuck"]
    loaded = bundle_from_files(files["params.npz"], files["bundle.json"])
    x = correlated(100, seed=3)
    np.testing.assert_array_equal(loaded.device_model.score(x)[0], bundle.device_model.score(x)[0])
    assert set(loaded.models) == set(bundle.models)

    without = ModelBundle(bundle.device, bundle.version, bundle.models, bundle.metadata)
    assert bundle_to_files(without)["params.npz"] != files["params.npz"]
    meta["device_model"]["spe_threshold"] *= 2  # the spec is checked on load
    meta["device_model"]["sha256"] = "0" * 64
    with pytest.raises(ModelFormatError, match="device model's arrays do not match"):
        bundle_from_files(files["params.npz"], json.dumps(meta).encode())


def test_a_bundle_from_before_device_models_loads_with_none():
    bundle, _ = train_device_bundle("pump-1", device_windows(), device_model=False)
    files = bundle_to_files(bundle)
    assert "device_model" not in json.loads(files["bundle.json"])
    loaded = bundle_from_files(files["params.npz"], files["bundle.json"])
    assert loaded.device_model is None and set(loaded.models) == set(SENSORS + ["stuck"])


def test_multivariate_verdicts_judge_modelled_devices_and_vote_the_rest():
    model = fit_device(correlated(2000), SENSORS)
    test = device_windows(20, seed=4, constant=False)
    test.loc[(test["sensor"] == "current") & (test["ts"] == test["ts"].iloc[3]), "value"] += 300
    test = test[~((test["sensor"] == "temp") & (test["ts"] == test["ts"].iloc[5]))]  # one window lacks temp
    predictions = pd.concat([test.assign(device="modelled"), test.assign(device="unmodelled")])
    predictions["is_anomaly"] = predictions["sensor"].eq("flow") & predictions["ts"].eq(test["ts"].iloc[0])

    verdicts = multivariate_verdicts(predictions, {"modelled": model, "unmodelled": None}).to_pandas()
    modelled, unmodelled = verdicts[verdicts["device"] == "modelled"], verdicts[verdicts["device"] == "unmodelled"]
    assert (modelled["method"] == "multivariate").all() and (unmodelled["method"] == "vote").all()
    assert unmodelled["is_anomaly"].tolist() == [True] + [False] * 19  # the vote of the flags
    x = test.pivot(index="ts", columns="sensor", values="value")[SENSORS].to_numpy()
    score, flags, _ = model.score(x)  # the missing temp is taken at its median
    np.testing.assert_allclose(modelled["score"], score)
    assert modelled["is_anomaly"].tolist() == flags.tolist() and flags[3]
    assert max(parse_contributions(modelled["contributions"].iloc[3]).items(), key=lambda p: p[1])[0] == "current"
    assert modelled["sensors_scored"].tolist()[5] == 3  # the per-sensor counts still report the predictions
    with pytest.raises(ValueError, match="lack column.*value"):
        multivariate_verdicts(predictions.drop(columns="value"), {})
