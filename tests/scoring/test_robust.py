"""The robust kind: exact against a plain computation, calibrated to its budget, sound on
constant, stuck, quantized and heavy-tailed sensors."""

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose

from scoring.detectors import FitOptions, TrainingError
from scoring.detectors.robust import HORIZON, KIND, LAG, WIDTH, RobustModel, series_features
from scoring.engine import CompiledModels, Runs, score_shard
from scoring.model_format import ModelBundle, ModelFormatError, bundle_from_files, bundle_to_files


def trimmed(values: np.ndarray) -> np.ndarray:
    """A window's values less one largest and one smallest, once it has at least three."""
    if len(values) < 3:
        return values
    ordered = np.sort(values)
    return ordered[1:-1]


def plain_features(x: np.ndarray, center: float, lag: int = LAG, width: int = WIDTH, horizon: int = HORIZON):
    """The features one window at a time, as written in the module's docstring."""
    jump, spread, shift = np.empty(len(x)), np.full(len(x), np.nan), np.full(len(x), np.nan)
    full = lag - 2
    for i in range(len(x)):
        past = trimmed(x[max(0, i - lag):i] - center)
        if len(past):
            shrink = np.sqrt((1 + 1 / full) / (1 + 1 / len(past)))
            jump[i] = abs(x[i] - center - past.mean()) * shrink
        else:
            jump[i] = abs(x[i] - center)
        if i + 1 >= width:
            spread[i] = trimmed(x[i + 1 - width:i + 1] - center).std()
        if i >= horizon:
            shift[i] = abs(x[i] - x[i - horizon:i].mean())
    return jump, spread, shift


def plain_margins(jump, spread, shift, jump_threshold, spread_high, spread_low, shift_threshold, unit):
    """The smallest margin to a threshold, in units of it, as written in the module's docstring: a
    NaN spread or shift is not judged, nor a spread's low side when its threshold is 0."""
    terms = [(jump_threshold - jump) / max(jump_threshold, unit),
             np.where(np.isnan(spread), np.inf, (spread_high - spread) / max(spread_high, unit)),
             np.where(np.isnan(spread) | (spread_low == 0), np.inf, (spread - spread_low) / max(spread_low, unit)),
             np.where(np.isnan(shift), np.inf, (shift_threshold - shift) / max(shift_threshold, unit))]
    return np.minimum.reduce(terms)


@pytest.mark.parametrize("lengths", [[200], [50, 7, 120, 3]])
def test_features_equal_the_plain_computation_series_by_series(lengths):
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.standard_t(3, n) * 2 + 40 for n in lengths])
    center = rng.normal(40, 1, len(lengths))
    jump, spread, shift = series_features(x, np.array(lengths), center, LAG, WIDTH, HORIZON)
    offset = 0
    for n, c in zip(lengths, center):
        want_jump, want_spread, want_shift = plain_features(x[offset:offset + n], c)
        assert_allclose(jump[offset:offset + n], want_jump, rtol=1e-9, atol=1e-9)
        assert_allclose(spread[offset:offset + n], want_spread, rtol=1e-7, atol=1e-7)
        assert_allclose(shift[offset:offset + n], want_shift, rtol=1e-9, atol=1e-9)
        offset += n


def test_scores_equal_the_plain_margins():
    rng = np.random.default_rng(1)
    model = KIND.fit(rng.normal(10, 1, 720))
    x = rng.normal(10, 1, 300)
    x[100] += 9  # a spike
    x[200:230] = x[199]  # stuck
    runs, _ = Runs.of(np.zeros(len(x), dtype=np.int64))
    score, flagged = CompiledModels([model]).decision(x, runs.with_model(np.zeros(1, dtype=np.int64)))
    features = plain_features(x, model.center, model.lag, model.width, model.horizon)
    want = plain_margins(*features, model.jump_threshold, model.spread_high, model.spread_low, model.shift_threshold,
                         model.unit)
    assert_allclose(score, want, rtol=1e-7, atol=1e-9)
    assert (flagged == (score < 0)).all()
    assert flagged[100] and flagged[215]


@pytest.mark.parametrize("noise", ["gaussian", "student-t 3", "ar1", "quantized"])
def test_a_clean_series_flags_close_to_its_budget(noise):
    rng = np.random.default_rng(2)
    n = 17_280  # a day of 5 s windows: half to train, half to judge
    if noise == "gaussian":
        x = rng.normal(50, 2, n)
    elif noise == "student-t 3":
        x = 50 + rng.standard_t(3, n)
    elif noise == "ar1":
        x = 50 + pd.Series(rng.normal(0, 1, n)).ewm(alpha=0.3).mean().to_numpy()
    else:
        x = np.round(rng.normal(50, 1.5, n) * 2) / 2
    model = KIND.fit(x[: n // 2], FitOptions(false_alarm_rate=0.005))
    rows = pd.DataFrame({"ts": pd.date_range("2026-01-01", periods=n // 2, freq="5s"), "device": "d",
                         "sensor": "s", "value": x[n // 2:]})
    rate = score_shard(rows, {"d": ModelBundle("d", "v", {"s": model})}).predictions["is_anomaly"].mean()
    assert 0.0005 <= rate <= 0.01, rate  # the budget is 0.5 %; at most twice it


def test_a_constant_sensor_gets_the_constant_rule_and_flags_only_when_it_moves():
    model = KIND.fit(np.full(500, 7.25))
    assert model.rule == "constant" and model.lag == 1 and model.width == 0
    x = np.array([7.25] * 10 + [7.5] + [7.5] * 10 + [7.25] * 5)
    runs, _ = Runs.of(np.zeros(len(x), dtype=np.int64))
    _, flagged = CompiledModels([model]).decision(x, runs.with_model(np.zeros(1, dtype=np.int64)))
    assert np.flatnonzero(flagged).tolist() == [10, 21]  # the two moves, not the new level
    tiny = np.full(10, 7.25 + 7.25e-7)  # within its tolerance
    _, flagged = CompiledModels([model]).decision(tiny, Runs.of(np.zeros(10, dtype=np.int64))[0].with_model(np.zeros(1, dtype=np.int64)))
    assert not flagged.any()


def test_a_stuck_sensor_is_found_and_a_sensor_stuck_half_the_time_cannot_be():
    rng = np.random.default_rng(3)
    noisy = KIND.fit(rng.normal(0, 1, 2000))
    x = rng.normal(0, 1, 400)
    x[200:260] = x[199]
    runs, _ = Runs.of(np.zeros(len(x), dtype=np.int64))
    _, flagged = CompiledModels([noisy]).decision(x, runs.with_model(np.zeros(1, dtype=np.int64)))
    assert flagged[215:260].all()
    half_stuck = np.where(rng.random(2000) < 0.6, 3.0, 3.0 + rng.integers(1, 3, 2000) * 0.5)
    model = KIND.fit(half_stuck)
    assert model.spread_low == 0.0 and "stuck" in model.metadata["not_judged"]
    assert model.metadata["training_flag_rate"] <= 0.005


def test_models_round_trip_through_a_bundle_and_bad_parameters_are_refused():
    model = KIND.fit(np.random.default_rng(4).normal(5, 1, 300))
    files = bundle_to_files(ModelBundle("d", "v1", {"s": model, "c": KIND.fit(np.zeros(50))}))
    loaded = bundle_from_files(files["params.npz"], files["bundle.json"])
    assert loaded.models["s"] == model and loaded.models["c"].rule == "constant"
    with pytest.raises(ModelFormatError, match="jump_threshold nan is not a finite number"):
        RobustModel(0.0, float("nan"), 1.0, 0.0, 1.0, 1e-9)
    with pytest.raises(ModelFormatError, match="width 2 has no trimmed spread"):
        RobustModel(0.0, 1.0, 1.0, 0.0, 1.0, 1e-9, width=2)
    with pytest.raises(ModelFormatError, match="rule 'x'"):
        RobustModel(0.0, 1.0, 1.0, 0.0, 1.0, 1e-9, rule="x")


@pytest.mark.parametrize("values, reason", [
    (np.array([1.0, np.nan] * 20), "NaN or infinite"),
    (np.array([1e300] * 20 + [1.0]), "overflow"),
    (np.ones(5), "fewer than min_samples"),
])
def test_unfittable_windows_are_refused_with_the_reason(values, reason):
    with pytest.raises(TrainingError, match=reason):
        KIND.fit(values)


@pytest.mark.parametrize("lag, width, horizon", [(LAG, WIDTH, HORIZON), (1, 0, 0), (5, 7, 9), (12, 13, 0)])
def test_many_series_scored_at_once_equal_each_scored_alone(lag, width, horizon):
    from scoring.detectors.robust import series_scores

    rng = np.random.default_rng(5)
    lengths = np.array([150, 3, 97, 150, 1, 60])
    x = rng.standard_t(3, lengths.sum()) + 20
    params = np.column_stack([rng.normal(20, 1, 6), rng.uniform(1, 3, (6, 4)), np.full(6, 1e-9)])
    params[2, 3] = 0.0  # a spread not judged on its low side
    together = series_scores(x, lengths, params, lag, width, horizon)
    offset = 0
    for k, n in enumerate(lengths):
        alone = series_scores(x[offset:offset + n], lengths[k:k + 1], params[k:k + 1], lag, width, horizon)
        assert_allclose(together[offset:offset + n], alone, rtol=0, atol=0)
        if lag == LAG and width == WIDTH and horizon == HORIZON:
            features = plain_features(x[offset:offset + n], params[k, 0])
            assert_allclose(alone, plain_margins(*features, *params[k, 1:]), rtol=1e-7, atol=1e-9)
        offset += n


def test_series_scored_where_they_lie_among_others_equal_them_gathered():
    from scoring.detectors.robust import _RobustBatch

    rng = np.random.default_rng(6)
    models = [KIND.fit(rng.normal(5 * k, 1 + k, 720), low=None, high=None) for k in range(3)]
    batch = _RobustBatch(models)
    lengths = np.array([200, 50, 130])
    start = np.array([10, 400, 240])  # out of order, with rows of no one's between them
    x = rng.normal(5, 2, 600)
    low, high = x - rng.exponential(1, 600), x + rng.exponential(1, 600)
    score, flagged = np.full(600, -7.0), np.zeros(600, dtype=bool)
    batch.decision_into(x, start, np.array([2, 0, 1]), lengths, low, high, score, flagged)
    rows = np.concatenate([np.arange(a, a + n) for a, n in zip(start, lengths)])
    want, want_flags = batch.decision(x[rows], np.array([2, 0, 1]), lengths, low[rows], high[rows])
    assert np.array_equal(score[rows], want) and np.array_equal(flagged[rows], want_flags)
    others = np.setdiff1d(np.arange(600), rows)
    assert (score[others] == -7.0).all() and not flagged[others].any()  # nothing written outside its series


def test_a_huge_window_leaves_no_rounding_error_in_the_windows_after_it():
    rng = np.random.default_rng(8)
    x = rng.normal(5, 0.01, 400)
    x[100] = 1e12  # a glitch: once it has left every window, the features are exact again
    jump, spread, shift = series_features(x, np.array([400]), np.array([5.0]), LAG, WIDTH, HORIZON)
    want_jump, want_spread, want_shift = plain_features(x, 5.0)
    after = slice(100 + 2 * HORIZON, None)
    assert_allclose(jump[after], want_jump[after], rtol=1e-9, atol=1e-12)
    assert_allclose(spread[after], want_spread[after], rtol=1e-7, atol=1e-12)
    assert_allclose(shift[after], want_shift[after], rtol=1e-9, atol=1e-12)
