"""The training gate and the device model: kept when it flags at most the device WARN rate of
the hold-out device windows, dropped by name (with its rate) when over it."""

import numpy as np
import pandas as pd

from bscore_assets.models.assets import judge_device_model
from bscore_assets.models.outcome import TrainingOutcome
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
