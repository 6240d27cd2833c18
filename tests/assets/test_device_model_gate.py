"""The training gate and the device model: kept when it flags at most the device WARN rate of
the hold-out device windows, dropped by name (with its rate) when over it."""

import numpy as np
import pandas as pd

from scoring.device_training import judge_device_model
from scoring.training_outcome import TrainingOutcome
from scoring.training import train_device_bundle


def windows(start: str, n: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ts = pd.date_range(start, periods=n, freq="5s")
    common = rng.normal(size=n)
    return pd.concat([pd.DataFrame({"ts": ts, "sensor": s, "value": common * (j + 1) + 0.1 * rng.normal(size=n)
                                    + (shift if s == "b" else 0.0)})
                      for j, s in enumerate(["a", "b", "c"])], ignore_index=True)


def test_the_device_model_is_kept_within_the_limit_and_dropped_over_it_by_name():
    bundle, _ = train_device_bundle("pump-1", windows("2026-01-01 00:00:05", 720, 0))
    kept_outcome, dropped_outcome = TrainingOutcome(), TrainingOutcome()

    kept = judge_device_model(bundle, windows("2026-01-01 01:00:05", 720, 1), 0.10, kept_outcome)
    assert kept is bundle.device_model and kept_outcome.device_model_refused == ""
    assert kept_outcome.device_model_holdout_rate <= 0.10

    broken = windows("2026-01-01 01:00:05", 720, 1, shift=3.0)  # sensor b leaves the others
    assert judge_device_model(bundle, broken, 0.10, dropped_outcome) is None
    assert dropped_outcome.device_model_holdout_rate > 0.10
    assert "over the device WARN rate 10.00%" in dropped_outcome.device_model_refused
    assert "no device model: flags" in dropped_outcome.story(3, 0.02)


class DictBlobs:
    def __init__(self):
        self.files = {}

    def read_bytes(self, key):
        if key not in self.files:
            raise FileNotFoundError(key)
        return self.files[key]


def test_the_verdicts_use_the_newest_bundle_that_scored_a_device_and_name_those_they_cannot_load():
    import pyarrow as pa

    from bscore_assets.verdicts.assets import device_models_of
    from scoring.model_format import ModelBundle, bundle_to_files

    trained, _ = train_device_bundle("pump-1", windows("2026-01-01 00:00:05", 720, 0))
    blobs = DictBlobs()
    for device, version, model in [("pump-1", "v2", trained.device_model), ("pump-2", "v1", None)]:
        files = bundle_to_files(ModelBundle(device, version, trained.models, {}, model))
        blobs.files.update({f"models/{device}/{version}/{name}": data for name, data in files.items()})
    predictions = pa.table({"device": ["pump-1", "pump-1", "pump-2", "pump-3"],
                            "model_version": ["v1", "v2", "v1", "v9"]})
    models, refused = device_models_of(blobs, predictions, {})
    assert models["pump-1"] is not None and models["pump-1"].sensors == trained.device_model.sensors
    assert models["pump-2"] is None  # a bundle without a device model: the vote
    assert list(refused) == ["pump-3"] and "FileNotFoundError" in refused["pump-3"]


def test_the_gate_fails_when_a_device_model_is_refused_as_when_a_sensor_model_is():
    from scoring.training_outcome import gate_passed

    assert gate_passed({"pump-1": TrainingOutcome(), "pump-2": TrainingOutcome()})
    assert not gate_passed({"pump-1": TrainingOutcome(), "pump-2": TrainingOutcome(device_model_refused="flags 30%")})
    assert not gate_passed({"pump-1": TrainingOutcome(sensors_refused={"t": "flags 30%"})})
