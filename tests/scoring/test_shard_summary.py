"""A shard's summary is a typed record: built by a real shard, sent as JSON (as an Azure ML job
sends it over Pipes) and read back equal, and merged per partition by the run."""

import numpy as np
import pandas as pd
import pytest

from bscore_assets.predictions.summaries import merge_shard_summaries
from scoring.blobs import FolderBlobs
from scoring.model_format import ModelBundle
from scoring.model_store import save_bundle
from scoring.shard_summary import ShardPartition, ShardSummary
from scoring.shard_task import run_shard_task
from scoring.shards import ShardTask
from tests.forged_bundles import good_model

HOUR = pd.Timestamp("2026-03-01T01:00")


class Windows:
    """A store of windows in memory: ``d1`` and ``d2`` have models, ``d3`` has none."""

    def read_sensor_values(self, start, end, devices=None, sensors=None):
        ends = pd.date_range(HOUR + pd.Timedelta(seconds=5), HOUR + pd.Timedelta(hours=1), freq="5s")
        frame = pd.DataFrame([(ts, d, s, 12.0 + (ts.second % 7) / 10, 1) for d in ("d1", "d2", "d3")
                              for s in ("1", "2") for ts in ends], columns=["ts", "device", "sensor", "value", "readings"])
        frame.loc[(frame["device"] == "d2") & (frame["sensor"] == "1") & (frame.index % 100 == 0), "value"] = 1e6
        return frame[frame["device"].isin(devices) & frame["sensor"].isin(sensors)].reset_index(drop=True)


@pytest.fixture
def summary(tmp_path) -> ShardSummary:
    blobs = FolderBlobs(tmp_path / "blob")
    for device in ("d1", "d2"):
        save_bundle(blobs, ModelBundle(device, f"{device}-v1", {"1": good_model(), "2": good_model(seed=1)}))
    return run_shard_task(ShardTask("shard-0000", ("d1", "d2", "d3"), (HOUR,), ("1", "2"), "run1"), Windows(), blobs)


def test_a_shard_reports_typed_partitions(summary):
    assert isinstance(summary, ShardSummary) and all(isinstance(p, ShardPartition) for p in summary.partitions)
    assert [(p.hour, p.sensor) for p in summary.partitions] == [(HOUR, "1"), (HOUR, "2")]
    first = summary.partitions[0]
    assert (first.windows, first.rows_scored) == (3 * 720, 2 * 720)
    assert first.devices_missing_model == ("d3",) and first.devices_refused == ()
    assert first.model_versions == {"d1": "d1-v1", "d2": "d2-v1"}
    assert first.devices["d2"][1] >= 7 and first.anomalies == sum(a for _, a in first.devices.values())
    assert summary.missing_models == (("d3", "1", 720), ("d3", "2", 720))
    assert summary.rows_scored == sum(p.rows_scored for p in summary.partitions) == 4 * 720


def test_the_json_a_job_sends_reads_back_equal(summary):
    import json

    assert ShardSummary.from_json(json.loads(json.dumps(summary.to_json()))) == summary


def test_a_message_that_is_not_a_summary_is_named():
    with pytest.raises(ValueError, match="shard summary needs .*partitions"):
        ShardSummary.from_json({"shard": "shard-0001", "devices": 1, "rows": 0, "rows_scored": 0, "anomalies": 0,
                                "models": 0})


def test_the_run_adds_up_the_shards_of_a_partition(summary):
    other = ShardSummary("shard-0001", 1, 720, 720, 3, 2, (ShardPartition(
        HOUR, "1", 720, 720, 3, {"d9": (720, 3)}, {"d9": "d9-v2"}, ("d9",), (), (), "predictions/x.parquet"),),
        timings=summary.timings)
    merged = merge_shard_summaries([summary, other], [HOUR], ["1", "2"])
    one = merged[(HOUR, "1")]
    assert (one.windows, one.rows_scored) == (3 * 720 + 720, 2 * 720 + 720)
    assert one.anomalies == summary.partitions[0].anomalies + 3
    assert one.devices["d9"] == [720, 3] and one.model_versions["d9"] == "d9-v2"
    assert one.devices_missing_model == ["d3"] and one.parts[-1] == "predictions/x.parquet"
    assert np.isclose(one.anomaly_rate, one.anomalies / one.rows_scored)
