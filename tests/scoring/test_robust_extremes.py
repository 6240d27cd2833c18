"""The robust kind's extremes: how far a window's farthest reading lies from its mean.

Exact against a plain computation; thresholded from training within its share of the budget;
bundles saved before windows carried extremes load and score as that code scored them (a
fixture saved by it: the same flags, scores equal to within rounding, as the compiled pass now
sums each window in another order); windows without extremes score as the model scores them
without the feature.
"""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose

from scoring.detectors import FitOptions
from scoring.detectors.base import upper_threshold
from scoring.detectors.robust import KIND, RobustModel, window_extremes
from scoring.engine import CompiledModels, Runs, score_shard
from scoring.model_format import ModelBundle, bundle_from_files, bundle_to_files
from scoring.windows import tumbling_window_means
from tests.scoring.test_robust import plain_features, plain_margins

BEFORE_EXTREMES = Path(__file__).parent / "data" / "robust_before_extremes"


def windows_of_readings(values: np.ndarray, per_window: int = 5) -> pd.DataFrame:
    """5 s windows (mean, low, high) of one reading a second, through bscore's aggregation."""
    ts = pd.Timestamp("2026-01-01") + pd.to_timedelta(np.arange(1, len(values) + 1) * 5 // per_window, unit="s")
    readings = pd.DataFrame({"ts": ts, "device": "d", "sensor": "s", "value": values})
    return tumbling_window_means(readings, 5)


def decision(model: RobustModel, x, low=None, high=None):
    runs, _ = Runs.of(np.zeros(len(x), dtype=np.int64))
    return CompiledModels([model]).decision(np.asarray(x, dtype=float), runs.with_model(np.zeros(1, dtype=np.int64)),
                                            low=low, high=high)


def test_window_extremes_are_the_farther_reading_from_the_mean():
    assert_allclose(window_extremes([2.0, 5.0, 1.0], [1.0, 4.0, np.nan], [4.0, 5.5, 3.0]), [2.0, 1.0, np.nan])


def test_scores_equal_the_plain_margins_with_the_extremes_term():
    rng = np.random.default_rng(3)
    train = windows_of_readings(rng.normal(10, 1, 3600 * 2))
    model = KIND.fit(train["value"].to_numpy(), FitOptions(), low=train["low"].to_numpy(),
                     high=train["high"].to_numpy())
    assert model.extremes_threshold is not None and model.extremes_threshold > 0
    readings = rng.normal(10, 1, 1500)
    readings[502] += 6  # one reading: a fifth of it in its window's mean, all of it in the extremes
    test = windows_of_readings(readings)
    x, low, high = (test[c].to_numpy().copy() for c in ("value", "low", "high"))
    low[200:220] = high[200:220] = np.nan  # windows stored before extremes were recorded
    score, flagged = decision(model, x, low, high)
    features = plain_features(x, model.center, model.lag, model.width, model.horizon)
    margins = plain_margins(*features, model.jump_threshold, model.spread_high, model.spread_low,
                            model.shift_threshold, model.unit)
    extremes = np.maximum(high - x, x - low)
    term = np.where(np.isnan(extremes), np.inf,
                    (model.extremes_threshold - extremes) / max(model.extremes_threshold, model.unit))
    assert_allclose(score, np.minimum(margins, term), rtol=1e-7, atol=1e-9)
    assert (flagged == (score < 0)).all()
    spike = 502 // 5
    assert flagged[spike] and term[spike] < 0 < margins[spike]  # found by its extremes alone


def test_the_budget_is_split_five_ways_and_the_extremes_threshold_is_its_share_of_training():
    rng = np.random.default_rng(4)
    train = windows_of_readings(rng.normal(0, 1, 3600 * 3))
    x, low, high = (train[c].to_numpy() for c in ("value", "low", "high"))
    options = FitOptions(false_alarm_rate=0.01)
    with_extremes, without = KIND.fit(x, options, low=low, high=high), KIND.fit(x, options)
    extremes = window_extremes(x, low, high)
    assert with_extremes.extremes_threshold >= upper_threshold(extremes, 0.01 / 5)
    assert np.mean(extremes > with_extremes.extremes_threshold) <= 0.01 / 5
    # The other features get a fifth of the budget instead of a quarter: thresholds at least as wide.
    assert with_extremes.jump_threshold >= without.jump_threshold
    assert without.extremes_threshold is None and "extremes" in without.metadata["not_judged"]
    assert with_extremes.metadata["training_flag_rate"] <= 0.02


def test_windows_of_one_reading_leave_the_extremes_unjudged_and_the_model_as_without_them():
    x = np.random.default_rng(5).normal(3, 1, 2000)
    model = KIND.fit(x, FitOptions(), low=x.copy(), high=x.copy())
    assert model == KIND.fit(x, FitOptions())
    assert model.extremes_threshold is None


def test_bundles_saved_before_extremes_load_and_score_as_that_code_did():
    bundle = bundle_from_files((BEFORE_EXTREMES / "params.npz").read_bytes(),
                               (BEFORE_EXTREMES / "bundle.json").read_bytes())
    assert all(m.extremes_threshold is None for m in bundle.models.values())
    rows = pd.read_csv(BEFORE_EXTREMES / "windows.csv", parse_dates=["ts"], dtype={"device": str, "sensor": str})
    want = np.load(BEFORE_EXTREMES / "scores.npy")
    scores = score_shard(rows, {"d1": bundle}).predictions["score"].to_numpy()
    assert np.array_equal(scores < 0, want < 0)
    assert_allclose(scores, want, rtol=1e-12, atol=1e-15)
    # Windows that do carry extremes change nothing for a model that does not judge them.
    rng = np.random.default_rng(6)
    spread = rng.exponential(5, len(rows))
    with_extremes = rows.assign(low=rows["value"] - spread, high=rows["value"] + spread)
    assert np.array_equal(score_shard(with_extremes, {"d1": bundle}).predictions["score"].to_numpy(), scores)
    # Saved again, such a model writes the same arrays as before: nothing for extremes.
    again = bundle_to_files(bundle)
    assert bundle_from_files(again["params.npz"], again["bundle.json"]).models == bundle.models


def test_a_model_with_extremes_round_trips_and_scores_windows_without_them_as_without_the_feature():
    rng = np.random.default_rng(8)
    train = windows_of_readings(rng.normal(20, 2, 3600))
    model = KIND.fit(train["value"].to_numpy(), FitOptions(), low=train["low"].to_numpy(),
                     high=train["high"].to_numpy())
    files = bundle_to_files(ModelBundle("d", "v", {"s": model}))
    assert bundle_from_files(files["params.npz"], files["bundle.json"]).models["s"] == model
    test = windows_of_readings(rng.normal(20, 2, 1200))
    x = test["value"].to_numpy()
    unjudged = RobustModel(**{**model.__dict__, "extremes_threshold": None})
    want = decision(unjudged, x)[0]
    nan = np.full(len(x), np.nan)
    assert np.array_equal(decision(model, x)[0], want)  # no extremes at all
    assert np.array_equal(decision(model, x, nan, nan)[0], want)  # extremes not recorded (NULL)
    old_rows = test[["ts", "device", "sensor", "value"]]
    assert np.array_equal(score_shard(old_rows, {"d": ModelBundle("d", "v", {"s": model})}).predictions["score"],
                          want)


def test_models_with_and_without_extremes_scored_together_equal_each_scored_alone():
    rng = np.random.default_rng(9)
    frames, bundles = [], {}
    for number, judged in enumerate([True, False, True]):
        device = f"d{number}"
        train = windows_of_readings(rng.normal(number * 10, 1 + number, 2400))
        low, high = (train["low"].to_numpy(), train["high"].to_numpy()) if judged else (None, None)
        model = KIND.fit(train["value"].to_numpy(), FitOptions(), low=low, high=high)
        bundles[device] = ModelBundle(device, "v", {"s": model})
        readings = rng.normal(number * 10, 1 + number, 900)
        readings[rng.integers(0, 900, 5)] += 12 * (1 + number)
        frames.append(windows_of_readings(readings).assign(device=device))
    rows = pd.concat(frames, ignore_index=True)
    together = score_shard(rows, bundles).predictions
    for device, bundle in bundles.items():
        alone = score_shard(rows[rows["device"] == device].reset_index(drop=True), {device: bundle}).predictions
        mine = together[together["device"] == device]
        assert np.array_equal(mine["score"].to_numpy(), alone["score"].to_numpy())


@pytest.mark.parametrize("bad", [float("nan"), -1.0, "1"])
def test_a_bad_extremes_threshold_is_refused(bad):
    from scoring.model_format import ModelFormatError

    with pytest.raises(ModelFormatError, match="extremes_threshold"):
        RobustModel(0.0, 1.0, 1.0, 0.0, 1.0, 1e-9, extremes_threshold=bad)
