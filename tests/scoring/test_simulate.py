"""The realistic fleet simulator: each behaviour has its property, labels cover exactly what changed."""

import numpy as np
import pandas as pd
import pytest

from scoring.anomaly_labels import label_mask, labels_from_planted
from scoring.readings import parse_event_bodies, readings_to_event_bodies
from scoring.simulate import simulate_fleet, simulate_readings

START = pd.Timestamp("2026-01-01T00:00")


def series(fleet, device="1", sensor="1"):
    r = fleet.readings
    return r.loc[(r["device"] == device) & (r["sensor"] == sensor)].set_index("ts")["value"]


def only(behaviour, **kw):
    args = dict(devices=4, sensors=3, start=START, hours=1.0, anomaly_rate=0.0, seed=5) | kw
    return simulate_fleet(mix={behaviour: 1.0}, **args)


def test_same_seed_same_fleet_other_seed_other_fleet():
    a, b = (simulate_fleet(3, 4, START, 0.5, 0.05, seed=3) for _ in range(2))
    pd.testing.assert_frame_equal(a.readings, b.readings)
    pd.testing.assert_frame_equal(a.labels, b.labels)
    c = simulate_fleet(3, 4, START, 0.5, 0.05, seed=4)
    assert not np.array_equal(a.readings["value"], c.readings["value"])


def test_readings_grid_and_ids_are_what_ingest_accepts():
    fleet = simulate_fleet(2, 3, START, 0.1, 0.0, seed=1)
    r = fleet.readings
    assert list(r.columns) == ["ts", "device", "sensor", "value"]
    assert len(r) == 2 * 3 * 360 and r["ts"].min() == START + pd.Timedelta(seconds=1)
    assert r["ts"].max() == START + pd.Timedelta(hours=0.1)
    parsed = parse_event_bodies(readings_to_event_bodies(r), now=START)
    assert parsed.rejected.empty and len(parsed.readings) == len(r)
    assert set(parsed.readings["device"]) == {"1", "2"} and set(parsed.readings["sensor"]) == {"1", "2", "3"}


def test_anomaly_rate_zero_plants_nothing():
    assert simulate_fleet(5, 5, START, 1.0, 0.0, seed=2).labels.empty


def test_constant_sensor_reads_one_value():
    fleet = only("constant")
    assert (fleet.readings.groupby(["device", "sensor"])["value"].nunique() == 1).all()


def test_constant_sensors_carry_no_anomaly():
    assert only("constant", anomaly_rate=0.5).labels.empty


def test_near_constant_sensor_blips_by_one_quantum():
    fleet = only("near_constant", hours=3.0)
    for (device, sensor), values in fleet.readings.groupby(["device", "sensor"])["value"]:
        profile = fleet.profiles.set_index(["device", "sensor"]).loc[(device, sensor)]
        assert set(np.unique(values - profile["level"])) <= {-profile["quantum"], 0.0, profile["quantum"]}
        assert (values == profile["level"]).mean() > 0.99
    assert (fleet.readings["value"] != fleet.readings.groupby(["device", "sensor"])["value"].transform("median")).any()


def test_quantized_values_are_multiples_of_their_step():
    fleet = only("quantized", anomaly_rate=0.1)
    steps = fleet.profiles.set_index(["device", "sensor"])["quantum"]
    step = steps.loc[list(zip(fleet.readings["device"], fleet.readings["sensor"]))].to_numpy()
    assert set(np.unique(step)) <= {0.5, 1.0}
    assert np.array_equal(fleet.readings["value"] / step, np.round(fleet.readings["value"] / step))
    assert (fleet.readings.groupby(["device", "sensor"])["value"].nunique() > 3).all()


def test_regime_sensors_switch_between_levels():
    fleet = only("regimes", hours=4.0)
    windows = fleet.readings.assign(minute=fleet.readings["ts"].dt.floor("5min"))
    means = windows.groupby(["device", "sensor", "minute"])["value"].mean()
    sigma = fleet.profiles.set_index(["device", "sensor"])["sigma"]
    # Levels sit 4-8 sigma apart: the 5-minute means of one sensor span more than 3 sigma.
    spread = means.groupby(["device", "sensor"]).agg(lambda m: m.max() - m.min())
    assert (spread > 3 * sigma.loc[spread.index]).mean() >= 0.9


def test_heavy_tailed_noise_has_more_extremes_than_gaussian():
    heavy, gauss = only("heavy_tailed"), only("noisy")

    def share_beyond_5_robust_sigmas(fleet):
        deviation = fleet.readings.groupby(["device", "sensor"])["value"].transform(lambda v: (v - v.median()).abs())
        mad = fleet.readings.groupby(["device", "sensor"])["value"].transform(lambda v: (v - v.median()).abs().median())
        return float((deviation > 5 * mad / 0.6745).mean())

    assert share_beyond_5_robust_sigmas(heavy) > 0.005 > share_beyond_5_robust_sigmas(gauss)


def test_noisy_sensor_noise_is_autocorrelated():
    values = series(only("noisy"))
    assert values.autocorr(lag=1) > 0.3


def test_seasonal_sensor_follows_the_clock_and_drifting_sensor_moves():
    seasonal = only("seasonal", hours=12.0, interval_seconds=60.0)
    values = series(seasonal)
    hourly = values.groupby(values.index.floor("h")).mean()
    # 12 hours are half a daily cycle of amplitude >= 2 sigma: the hourly means move by >= 1 sigma.
    assert hourly.max() - hourly.min() > seasonal.profiles["sigma"].iloc[0]
    drifting = only("drifting", hours=12.0, interval_seconds=60.0)
    moved = drifting.readings.groupby(["device", "sensor"])["value"].apply(
        lambda v: v.iloc[-60:].mean() - v.iloc[:60].mean())
    assert (moved.abs() > 0.5 * drifting.profiles.set_index(["device", "sensor"])["sigma"]).all()


def span_rows(readings, label, _cache={}):
    """Row numbers of one label's readings, found without label_mask (which the tests check)."""
    if _cache.get("readings") is not readings:
        _cache.update(readings=readings, rows=readings.groupby(["device", "sensor"]).indices)
    rows = _cache["rows"][(label.device, label.sensor)]
    ts = readings["ts"].to_numpy()[rows]
    return rows[(ts > label.start.to_datetime64()) & (ts <= label.end.to_datetime64())]


@pytest.fixture(scope="module")
def clean_and_planted():
    args = dict(devices=20, sensors=5, start=START, hours=1.0, seed=9, train_hours=1.0)
    return simulate_fleet(anomaly_rate=0.0, **args), simulate_fleet(anomaly_rate=0.05, **args)


def test_labels_cover_exactly_the_changed_readings(clean_and_planted):
    clean, planted = clean_and_planted
    labels = planted.labels
    assert set(labels["kind"]) == {"spike", "level_shift", "stuck", "variance"}
    changed = clean.readings["value"].to_numpy() != planted.readings["value"].to_numpy()
    inside = label_mask(planted.readings, labels)
    assert changed.any() and not (changed & ~inside).any()
    assert all(changed[span_rows(planted.readings, label)].any() for label in labels.itertuples())


def test_anomalies_only_after_the_training_hours(clean_and_planted):
    labels = clean_and_planted[1].labels
    assert (labels["start"] >= START + pd.Timedelta(hours=1)).all()
    assert (labels["end"] <= START + pd.Timedelta(hours=2)).all() and (labels["start"] < labels["end"]).all()


def test_each_kind_changes_its_span_as_it_claims(clean_and_planted):
    clean, planted = clean_and_planted
    sigma = planted.profiles.set_index(["device", "sensor"])["sigma"]
    for label in planted.labels.itertuples():
        span = span_rows(planted.readings, label)
        before, after = clean.readings["value"].to_numpy()[span], planted.readings["value"].to_numpy()[span]
        s = sigma.loc[(label.device, label.sensor)]
        if label.kind == "stuck":
            previous = planted.readings.iloc[span[0] - len(planted.profiles)]  # the same sensor, one step earlier
            assert (previous["device"], previous["sensor"], previous["ts"]) == (label.device, label.sensor, label.start)
            assert (after == previous["value"]).all()
        elif label.kind == "spike":
            assert len(after) <= 3 and (np.abs(after - before) >= 5.5 * s).all()
        elif label.kind == "level_shift":
            assert abs(after.mean() - before.mean()) >= 2.5 * s
        elif label.kind == "variance":
            assert np.std(after - np.mean(after)) > 1.5 * np.std(before - np.mean(before))


def test_realized_anomaly_share_is_near_the_rate():
    fleet = simulate_fleet(50, 5, START, 2.0, 0.02, seed=11, mix={"noisy": 1.0})
    share = label_mask(fleet.readings, fleet.labels).mean()
    assert 0.01 < share < 0.03


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="anomaly_rate"):
        simulate_fleet(anomaly_rate=2)
    with pytest.raises(ValueError, match="mix: unknown behaviour"):
        simulate_fleet(mix={"wobbly": 1.0})
    with pytest.raises(ValueError, match="devices=0"):
        simulate_fleet(devices=0)


def test_uniform_simulator_planted_windows_become_labels():
    readings = simulate_readings(2, 2, START, 0.5, anomaly_rate=0.05, seed=1)
    labels = labels_from_planted(readings, 1.0, 5)
    assert len(labels) > 0 and set(labels["kind"]) == {"offset"}
    assert np.array_equal(label_mask(readings, labels), readings["planted"].to_numpy())
