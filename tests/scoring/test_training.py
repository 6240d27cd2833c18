"""Training: a model per sensor of the kind asked for, with complete metadata in the safe format."""

import numpy as np
import pandas as pd
from numpy.testing import assert_allclose

from scoring.engine import decision_values
from scoring.model_format import METADATA_KEYS
import pytest

from scoring.training import FitOptions, TrainingError, fit_sensor_model, train_device_bundle, train_fleet


def test_bundle_models_carry_metadata_and_match_their_pipelines():
    rng = np.random.default_rng(0)
    ts = pd.date_range("2026-01-01T00:00:05", periods=60, freq="5s")
    aggregates = pd.DataFrame({"ts": np.tile(ts, 2), "sensor": np.repeat(["1", "2"], 60),
                               "value": rng.uniform(10, 15, 120)})
    aggregates = pd.concat([aggregates, aggregates.iloc[:3].assign(sensor="3")])

    bundle, skipped = train_device_bundle("dev", aggregates, FitOptions(), kind="svm")

    assert list(skipped) == ["3"] and "fewer than min_samples=10" in skipped["3"] and sorted(bundle.models) == ["1", "2"]
    meta = bundle.models["1"].metadata
    assert set(METADATA_KEYS) <= set(meta)
    assert (meta["n_samples"], meta["trained_from"], meta["trained_to"]) == (60, ts[0].isoformat(), ts[-1].isoformat())
    model, pipeline = fit_sensor_model(aggregates.loc[aggregates["sensor"] == "1", "value"].to_numpy())
    probe = rng.uniform(0, 30, 100)
    assert_allclose(decision_values(probe, np.zeros(100, dtype=int), [model]),
                    pipeline.decision_function(probe.reshape(-1, 1)), rtol=0, atol=1e-9)


def _windows(values_by_key: dict, n: int = 60) -> pd.DataFrame:
    ts = pd.date_range("2026-01-01T00:00:05", periods=n, freq="5s")
    frames = [pd.DataFrame({"ts": ts, "device": d, "sensor": s, "value": v}) for (d, s), v in values_by_key.items()]
    return pd.concat(frames, ignore_index=True)


def test_an_unfittable_sensor_is_refused_naming_device_and_sensor_and_the_fleet_still_trains():
    rng = np.random.default_rng(1)
    huge = rng.uniform(10, 15, 60)
    huge[7] = 1e300  # one accepted reading: its square overflows in the scaler's variance
    values = {(d, s): rng.uniform(10, 15, 60) for d in ("d1", "d2", "d3") for s in ("1", "2")}
    values[("d2", "2")] = huge

    bundles, refused = train_fleet(_windows(values), ["d1", "d2", "d3", "d4"], FitOptions(), kind="svm")

    assert sorted(bundles) == ["d1", "d2", "d3"] and sorted(bundles["d2"].models) == ["1"]
    assert sorted(bundles["d1"].models) == sorted(bundles["d3"].models) == ["1", "2"]
    assert list(refused["d2"]) == ["2"] and refused["d2"]["2"].startswith("device d2 sensor 2: cannot fit 60 windows")
    assert "max 1e+300" in refused["d2"]["2"] and "overflow" in refused["d2"]["2"]
    assert refused["d4"] == {"*": "device d4: no windows in the training window"}
    assert set(refused) == {"d2", "d4"}


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_windows_are_refused(bad):
    values = np.random.default_rng(2).uniform(10, 15, 60)
    values[3] = bad

    windows = _windows({("d", "s"): values}).drop(columns="device")
    for kind in ("svm", "robust"):
        bundle, refused = train_device_bundle("d", windows, FitOptions(), kind=kind)
        assert not bundle.models and refused == {"s": "device d sensor s: 1 of 60 windows are NaN or infinite"}
    bundle, refused = train_device_bundle("d", windows)

    assert not bundle.models and refused == {"s": "device d sensor s: 1 of 60 windows are NaN or infinite"}
    with pytest.raises(TrainingError, match="NaN or infinite"):
        fit_sensor_model(values)
