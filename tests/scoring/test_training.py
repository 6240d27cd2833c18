"""Training: the reference's pipeline per sensor, with complete metadata in the safe format."""

import numpy as np
import pandas as pd
from numpy.testing import assert_allclose

from scoring.engine import decision_values
from scoring.model_format import METADATA_KEYS
from scoring.training import SvmParams, fit_sensor_model, train_device_bundle


def test_bundle_models_carry_metadata_and_match_their_pipelines():
    rng = np.random.default_rng(0)
    ts = pd.date_range("2026-01-01T00:00:05", periods=60, freq="5s")
    aggregates = pd.DataFrame({"ts": np.tile(ts, 2), "sensor": np.repeat(["1", "2"], 60),
                               "value": rng.uniform(10, 15, 120)})
    aggregates = pd.concat([aggregates, aggregates.iloc[:3].assign(sensor="3")])

    bundle, skipped = train_device_bundle("dev", aggregates, SvmParams())

    assert list(skipped) == ["3"] and "fewer than min_samples=10" in skipped["3"] and sorted(bundle.models) == ["1", "2"]
    meta = bundle.models["1"].metadata
    assert set(METADATA_KEYS) <= set(meta)
    assert (meta["n_samples"], meta["trained_from"], meta["trained_to"]) == (60, ts[0].isoformat(), ts[-1].isoformat())
    model, pipeline = fit_sensor_model(aggregates.loc[aggregates["sensor"] == "1", "value"].to_numpy())
    probe = rng.uniform(0, 30, 100)
    assert_allclose(decision_values(probe, np.zeros(100, dtype=int), [model]),
                    pipeline.decision_function(probe.reshape(-1, 1)), rtol=0, atol=1e-9)
