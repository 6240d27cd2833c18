"""``aggregate_hour`` in time slices gives exactly the whole hour's windows and metadata."""

import functools
import hashlib

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)
import pytest

import bscore_assets.aggregation.assets as aggregation
from bscore_assets.storage import part_span
from scoring.blob_layout import part_layout, raw_part_key
from resources.blob import LocalBlobStore
from resources.sql import SqlStore
from scoring.hour_slices import plan_hour_slices
from scoring.parquet import to_parquet_bytes
from scoring.raw_parts import read_raw_parts
from scoring.windows import window_means_table

HOUR = pd.Timestamp("2026-01-01T00:00")


def readings(rng, first_second, last_second, devices=7, sensors=3):
    """One reading per device, sensor and second in ``(first_second, last_second]``, some fractional."""
    seconds = np.arange(first_second + 1, last_second + 1)
    grid = pd.MultiIndex.from_product([seconds, [f"d{d}" for d in range(devices)], [str(s) for s in range(sensors)]])
    frame = grid.to_frame(index=False, name=["second", "device", "sensor"])
    jitter = np.where(rng.random(len(frame)) < 0.1, -0.5, 0.0)  # some readings between whole seconds
    frame["ts"] = (HOUR + pd.to_timedelta(frame["second"] + jitter, unit="s")).astype("datetime64[ns]")
    frame["value"] = rng.normal(size=len(frame))
    return frame[["ts", "device", "sensor", "value"]]


def land(blob, frame, named_span=True):
    ns = frame["ts"].to_numpy(dtype="datetime64[ns]").view("int64")
    span = part_span(ns, HOUR) if named_span else None
    key = raw_part_key(HOUR, hashlib.sha256(frame.to_csv().encode()).hexdigest()[:20], len(frame), span)
    blob.write_bytes(key, to_parquet_bytes(frame))
    return key


@pytest.fixture
def hour_of_parts(tmp_path):
    """Time-ordered parts, a re-delivery with other boundaries straddling the slice cuts (repeats
    with other values: the first part in listing order must win), and an old part without a span."""
    rng = np.random.default_rng(3)
    blob = LocalBlobStore(root=str(tmp_path / "blob"))
    hour = readings(rng, 0, 3600)
    seconds = (hour["ts"] - HOUR).dt.total_seconds()
    for a in range(0, 3600, 300):
        land(blob, hour[(seconds > a) & (seconds <= a + 300)])
    straddling = hour[(seconds > 700) & (seconds <= 2300)].assign(value=lambda f: f["value"] + 100)
    land(blob, straddling)
    land(blob, hour[(seconds > 2000) & (seconds <= 2010)].assign(value=7.0), named_span=False)
    return blob


def test_slices_give_the_whole_hours_windows_and_metadata(hour_of_parts, tmp_path, monkeypatch):
    blob = hour_of_parts
    keys = aggregation.raw_parts(blob, HOUR)
    assert sum(part_layout(k) == (part_layout(k).rows, 0, 3600) for k in keys) == 1  # the one without a span
    planned = []

    def small_slices(spans, window_seconds):
        planned.extend(plan_hour_slices(spans, window_seconds, budget=20_000))
        return planned

    monkeypatch.setattr(aggregation, "plan_hour_slices", small_slices)
    sql = SqlStore(url=f"sqlite:///{tmp_path / 'bscore.db'}")
    got = aggregation.aggregate_hour(blob, sql, HOUR, 5)

    assert len(planned) >= 4
    reads = np.bincount([i for s in planned for i in s.parts], minlength=len(keys))
    by_span = {part_layout(k)[1:]: n for k, n in zip(keys, reads)}
    assert by_span[(0, 3600)] == len(planned)  # the part without a span, read in every slice
    assert by_span[(700, 2300)] >= 2  # the re-delivery straddles cuts
    whole = read_raw_parts([blob.read_bytes(k) for k in keys], dictionary=True)
    expected = window_means_table(whole, 5).to_pandas()
    stored = sql.read_sensor_values(HOUR, HOUR + pd.Timedelta(hours=1))
    pd.testing.assert_frame_equal(stored, expected, check_exact=True)
    assert got == {"aggregated": True, "windows": len(expected), "readings": whole.num_rows, "devices": 7,
                   "sensors": 3, "non_finite": 0, "expected": [len(expected), whole.num_rows],
                   "stored": [len(expected), whole.num_rows], "devices_missing": [],
                   # the straddling part and the old one re-send 1,600 + 10 seconds x 21 series with other values
                   "redelivered": 0, "conflicts": (1600 + 10) * 21}
    assert int(expected["readings"].sum()) == 3600 * 7 * 3  # each repeat counted once


def test_a_slice_that_fails_leaves_the_previous_windows(hour_of_parts, tmp_path, monkeypatch):
    blob = hour_of_parts
    sql = SqlStore(url=f"sqlite:///{tmp_path / 'bscore.db'}")
    monkeypatch.setattr(aggregation, "plan_hour_slices", functools.partial(plan_hour_slices, budget=20_000))
    aggregation.aggregate_hour(blob, sql, HOUR, 5)
    before = sql.read_sensor_values(HOUR, HOUR + pd.Timedelta(hours=1))
    calls = []

    def failing_means(table, window_seconds):
        """Other values for the first slices, then a crash in the third."""
        calls.append(1)
        if len(calls) == 3:
            raise MemoryError("killed in the third slice")
        windows = window_means_table(table, window_seconds)
        return windows.set_column(3, "value", pa.array(np.zeros(len(windows))))

    monkeypatch.setattr(aggregation, "window_means_table", failing_means)
    with pytest.raises(MemoryError):
        aggregation.aggregate_hour(blob, sql, HOUR, 5)
    pd.testing.assert_frame_equal(sql.read_sensor_values(HOUR, HOUR + pd.Timedelta(hours=1)), before)


class LosesADevice(SqlStore):
    """A store whose replace silently drops one device's windows (a faulty writer or trigger)."""

    lost: str

    def replace_sensor_values_batches(self, start, end, batches):
        kept = (batch.filter(pa.compute.not_equal(batch["device"], self.lost)) for batch in batches)
        return super().replace_sensor_values_batches(start, end, kept)


def test_device_coverage_compares_the_senders_with_what_sql_holds(hour_of_parts, tmp_path):
    from bscore_assets.aggregation.checks import aggregate_check_results

    sql = LosesADevice(url=f"sqlite:///{tmp_path / 'bscore.db'}", lost="d3")
    found = aggregation.aggregate_hour(hour_of_parts, sql, HOUR, 5)
    assert found["devices_missing"] == ["d3"]
    coverage = {r.check_name: r for r in aggregate_check_results({"2026-01-01-00:00": found})}["device_coverage"]
    assert not coverage.passed and coverage.metadata["devices_missing_windows"].value == {"2026-01-01-00:00": ["d3"]}
