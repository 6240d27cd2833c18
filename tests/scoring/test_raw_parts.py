"""Reading an hour's raw Parquet parts in columns: each (device, sensor, ts) once, the first kept."""

import numpy as np
import pandas as pd
import pytest

from scoring.parquet import to_parquet_bytes
from scoring.raw_parts import read_raw_parts
from scoring.readings import drop_duplicate_readings


def part(rng, n, devices=30):
    ts = pd.Timestamp("2026-01-01") + pd.to_timedelta(rng.integers(1, 3600, n), unit="s")
    return pd.DataFrame({"ts": ts.astype("datetime64[ns]"), "device": rng.choice([str(d) for d in range(devices)], n),
                         "sensor": rng.choice(["1", "2", "3"], n), "value": rng.normal(size=n)})


@pytest.mark.parametrize("as_paths", [False, True])
def test_parts_read_as_the_pandas_reference_with_repeats_dropped(tmp_path, as_paths):
    rng = np.random.default_rng(1)
    frames = [part(rng, 2000) for _ in range(4)]
    frames.append(frames[1].iloc[100:600])  # a batch delivered again with other boundaries
    frames[2] = pd.concat([frames[2], frames[2].iloc[:5].assign(value=99.0)])  # repeats with other values
    data = [to_parquet_bytes(frame) for frame in frames]
    if as_paths:
        paths = [tmp_path / f"part-{i}.parquet" for i in range(len(data))]
        for path, blob in zip(paths, data):
            path.write_bytes(blob)
        data = paths
    got = read_raw_parts(data).to_pandas()
    expected = drop_duplicate_readings(pd.concat(frames, ignore_index=True))
    pd.testing.assert_frame_equal(got, expected, check_exact=True)
    assert not (got["value"] == 99.0).any()  # the first reading of a key wins


def test_no_parts_and_no_repeats():
    assert read_raw_parts([]).num_rows == 0
    frame = part(np.random.default_rng(2), 500).drop_duplicates(["device", "sensor", "ts"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(read_raw_parts([to_parquet_bytes(frame)]).to_pandas(), frame)


def test_parts_spanning_years_drop_repeats_the_same_way():
    frames = [pd.DataFrame({"ts": pd.to_datetime(["2020-01-01", "2026-01-01", "2020-01-01"]).astype("datetime64[ns]"),
                            "device": ["a", "a", "a"], "sensor": ["1", "1", "1"], "value": [1.0, 2.0, 3.0]})]
    got = read_raw_parts([to_parquet_bytes(f) for f in frames]).to_pandas()
    pd.testing.assert_frame_equal(got, drop_duplicate_readings(frames[0]))


def test_dictionary_encoded_result_holds_the_same_readings_and_windows():
    from scoring.windows import window_means_table

    rng = np.random.default_rng(4)
    data = [to_parquet_bytes(part(rng, 3000)) for _ in range(3)]
    plain, encoded = read_raw_parts(data), read_raw_parts(data, dictionary=True)
    pd.testing.assert_frame_equal(encoded.to_pandas().astype({"device": "str", "sensor": "str"}), plain.to_pandas())
    assert window_means_table(encoded, 5).equals(window_means_table(plain, 5))
