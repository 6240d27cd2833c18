"""Tumbling windows: (end - length, end] as in Azure Stream Analytics, end as timestamp."""

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from numpy.testing import assert_allclose

from scoring.windows import tumbling_window_means, window_means_table


def frame(rows):
    return pd.DataFrame(rows, columns=["ts", "device", "sensor", "value"]).astype({"ts": "datetime64[ns]"})


def test_window_edges_and_means():
    readings = frame(
        [
            ("2026-01-01T00:00:00", "1", "1", 1.0),  # a boundary ends its window (the previous hour's last)
            ("2026-01-01T00:00:00.001", "1", "1", 3.0),
            ("2026-01-01T00:00:05", "1", "1", 5.0),
            ("2026-01-01T00:00:05.001", "1", "1", 10.0),
            ("2026-01-01T00:00:01", "1", "2", 7.0),
            ("2026-01-01T00:00:02", "2", "1", 5.0),
        ]
    )
    out = tumbling_window_means(readings, 5)
    got = {(r.device, r.sensor, r.ts.isoformat()): (r.value, r.readings) for r in out.itertuples()}
    assert got == {
        ("1", "1", "2026-01-01T00:00:00"): (1.0, 1),
        ("1", "1", "2026-01-01T00:00:05"): (4.0, 2),
        ("1", "1", "2026-01-01T00:00:10"): (10.0, 1),
        ("1", "2", "2026-01-01T00:00:05"): (7.0, 1),
        ("2", "1", "2026-01-01T00:00:05"): (5.0, 1),
    }


@pytest.mark.parametrize("seconds", [1, 5, 60, 600])
def test_configurable_length(seconds):
    ts = pd.date_range("2026-01-01T00:00:01", periods=3600, freq="s")
    readings = pd.DataFrame({"ts": ts, "device": "1", "sensor": "1", "value": range(3600)}).astype({"value": float})
    out = tumbling_window_means(readings, seconds)
    assert len(out) == 3600 // seconds
    assert out["ts"].iloc[-1] == pd.Timestamp("2026-01-01T01:00")
    assert out["ts"].iloc[0] == pd.Timestamp("2026-01-01") + pd.Timedelta(seconds=seconds)
    assert_allclose(out["value"].iloc[0], (seconds - 1) / 2, atol=1e-12)


@pytest.mark.parametrize("seconds", [7, 2.5, 0])
def test_length_must_be_whole_seconds_dividing_an_hour(seconds):
    with pytest.raises(ValueError, match=f"window_seconds={seconds}"):
        tumbling_window_means(frame([("2026-01-01", "1", "1", 1.0)]), seconds)


def test_already_aggregated_data_maps_onto_itself():
    ends = pd.date_range("2026-01-01T00:00:05", periods=10, freq="5s")
    readings = pd.DataFrame({"ts": ends, "device": "1", "sensor": "1", "value": range(10)}).astype({"value": float})
    out = tumbling_window_means(readings, 5)
    assert (out["ts"].to_numpy() == ends.to_numpy()).all()
    assert (out["readings"] == 1).all()


def test_columnar_means_equal_a_pandas_group_by_on_a_random_fleet():
    rng = np.random.default_rng(3)
    n = 50_000
    ts = pd.Timestamp("2026-01-01") + pd.to_timedelta(rng.integers(0, 3600 * 10**9, n), unit="ns")
    ts = ts.where(rng.random(n) > 0.05, ts.floor("5s"))  # many readings exactly on boundaries
    readings = pd.DataFrame({"ts": ts, "device": rng.choice([f"d{i}" for i in range(40)], n),
                             "sensor": rng.choice(["1", "2", "10", "é"], n), "value": rng.normal(50, 20, n)})
    out = tumbling_window_means(readings, 5)
    ends = readings["ts"].dt.ceil("5s")
    expected = (readings.assign(ts=ends).groupby(["device", "sensor", "ts"])["value"].agg(["mean", "size"])
                .reset_index().rename(columns={"mean": "value", "size": "readings"}))
    assert out[["device", "sensor", "ts"]].equals(expected[["device", "sensor", "ts"]])
    assert_allclose(out["value"], expected["value"], atol=1e-9)
    assert (out["readings"].to_numpy() == expected["readings"].to_numpy()).all()


def test_dictionary_encoded_parts_aggregate_like_plain_strings():
    readings = frame([("2026-01-01T00:00:01", "1", "1", 1.0), ("2026-01-01T00:00:02", "2", "1", 3.0)])
    table = pa.Table.from_pandas(readings, preserve_index=False)
    parts = pa.concat_tables([table.slice(0, 1), table.slice(1, 1)])
    encoded = parts.set_column(1, "device", pa.chunked_array([c.dictionary_encode() for c in parts["device"].chunks]))
    assert window_means_table(encoded, 5).equals(window_means_table(table, 5))


def test_readings_spread_over_years_aggregate_the_same():
    readings = frame([("2020-01-01T00:00:01", "b", "1", 1.0), ("2020-01-01T00:00:02", "b", "1", 2.0),
                      ("2026-01-01T00:00:03", "a", "2", 5.0), ("2026-01-01T00:00:05", "a", "2", 6.0)])
    out = tumbling_window_means(readings, 5)
    got = {(r.device, r.sensor, r.ts.isoformat()): (r.value, r.readings) for r in out.itertuples()}
    assert got == {("a", "2", "2026-01-01T00:00:05"): (5.5, 2), ("b", "1", "2020-01-01T00:00:05"): (1.5, 2)}
    assert list(out["device"]) == ["a", "b"]


@pytest.mark.parametrize("spread_over_years", [False, True])  # the bincount path, then the hashed one
def test_low_and_high_equal_pandas_min_and_max_per_window(spread_over_years):
    rng = np.random.default_rng(7)
    n = 5_000
    ts = pd.Timestamp("2026-01-01") + pd.to_timedelta(rng.integers(0, 3_600_000, n), unit="ms")
    if spread_over_years:
        ts = ts - pd.to_timedelta(rng.integers(0, 2, n) * 6 * 365, unit="D")
    readings = pd.DataFrame({"ts": ts, "device": rng.choice(["d1", "d2", "d3"], n),
                             "sensor": rng.choice(["s1", "s2"], n), "value": rng.standard_t(2, n) * 10})
    out = tumbling_window_means(readings, 5)
    want = (readings.assign(ts=readings["ts"].dt.ceil("5s")).groupby(["device", "sensor", "ts"])["value"]
            .agg(["min", "max"]).reset_index())
    assert len(out) == len(want)
    assert (out["low"].to_numpy() == want["min"].to_numpy()).all()
    assert (out["high"].to_numpy() == want["max"].to_numpy()).all()
    assert (out["low"] <= out["value"] + 1e-12).all() and (out["value"] <= out["high"] + 1e-12).all()
