"""A training shard run where its data is: it reads its devices' windows from a real SQLite store,
trains each behind the gate, stores promoted bundles (not current) and reports each device's
outcome as JSON that reads back equal; slices of devices read one at a time train the same."""

import json

import numpy as np
import pandas as pd
import pytest

from resources.sql import SqlStore
from scoring.blobs import FolderBlobs
from scoring.detectors import FitOptions
from scoring.device_training import GateLimits
from scoring.model_store import load_current_bundles_or_refusals, save_bundle
from scoring.remote_tasks import run_task, summary_from_json, task_from_json
from scoring.training import train_device_bundle
from scoring.training_task import TrainingSummary, TrainingTask, plan_training_shards

START = pd.Timestamp("2026-03-01T00:00")
END = START + pd.Timedelta(hours=2)
HOLDOUT = END - pd.Timedelta(hours=1)
LIMITS = GateLimits(anomaly_rate_warn=0.02, device_anomaly_rate_warn=0.10)


def windows(devices, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ends = pd.date_range(START + pd.Timedelta(seconds=5), END, freq="5s")
    frames = []
    for device in devices:
        for sensor in ("1", "2"):
            value = 50 + rng.normal(0, 1, len(ends))
            frames.append(pd.DataFrame({"ts": ends, "device": device, "sensor": sensor, "value": value, "readings": 5,
                                        "low": value - rng.uniform(0.5, 1, len(ends)),
                                        "high": value + rng.uniform(0.5, 1, len(ends))}))
    return pd.concat(frames, ignore_index=True)


@pytest.fixture
def store(tmp_path) -> SqlStore:
    sql = SqlStore(url=f"sqlite:///{tmp_path / 'bscore.db'}")
    sql.replace_sensor_values(windows(["d1", "d2", "d3"]), START, END)
    return sql


def task(devices, per_read=200) -> TrainingTask:
    return TrainingTask("training-0000", tuple(devices), START, END, HOLDOUT, "robust", False, FitOptions(), LIMITS,
                        per_read)


def test_a_training_shard_stores_bundles_not_current_and_reports_each_device(store, tmp_path):
    blobs = FolderBlobs(tmp_path / "blob")
    summary = run_task(task(["d1", "d2", "d3", "d4"]), store, blobs)

    assert isinstance(summary, TrainingSummary)
    assert {d: o["status"] for d, o in summary.outcomes.items()} == {
        "d1": "promoted", "d2": "promoted", "d3": "promoted", "d4": "no model"}
    assert summary.outcomes["d4"]["reason"] == "no windows in the training window"
    outcome, version = summary.outcome("d1")
    assert outcome.windows_trained == 2 * 720 and set(outcome.holdout_rates) == {"1", "2"} and version
    # Stored under its version, and not current: the run makes it so once its materialization is stored.
    assert any(version in key for key in blobs.list("models/d1/"))
    assert load_current_bundles_or_refusals(blobs, ["d1", "d2", "d3"]) == ({}, {})
    assert summary.champions == {} and summary.devices_refused == {}
    assert summary.totals()["promoted"] == 3 and "3 promoted" in summary.log_line()


def test_the_json_a_job_sends_reads_back_equal(store, tmp_path):
    sent = task(["d1", "d2"], per_read=1)
    assert task_from_json(json.loads(json.dumps(sent.to_json()))) == sent
    summary = run_task(sent, store, FolderBlobs(tmp_path / "blob"))
    assert summary_from_json(json.loads(json.dumps(summary.to_json()))) == summary


def test_devices_read_a_slice_at_a_time_train_as_read_together(store, tmp_path):
    together = run_task(task(["d1", "d2", "d3"]), store, FolderBlobs(tmp_path / "a"))
    sliced = run_task(task(["d1", "d2", "d3"], per_read=1), store, FolderBlobs(tmp_path / "b"))
    def without_versions(summary):  # a version names its training time too
        return {d: {k: v for k, v in o.items() if k != "version"} for d, o in summary.outcomes.items()}

    assert without_versions(together) == without_versions(sliced)
    assert all(o["version"] for o in sliced.outcomes.values())


def test_a_champion_that_does_not_load_is_reported_and_the_device_trains_without_it(store, tmp_path):
    blobs = FolderBlobs(tmp_path / "blob")
    champion, _ = train_device_bundle("d1", windows(["d1"], seed=3).drop(columns="device"))
    save_bundle(blobs, champion)
    save_bundle(blobs, train_device_bundle("d2", windows(["d2"], seed=4).drop(columns="device"))[0])
    version = champion.version
    (tmp_path / "blob" / "models" / "d2").joinpath("current.json").write_text("{not json")

    summary = run_task(task(["d1", "d2"]), store, blobs)

    assert summary.champions == {"d1": version}
    assert set(summary.unreadable) == {"d2"}
    assert summary.outcomes["d2"]["status"] == "promoted"


def test_shards_group_sorted_devices_and_reads_shrink_with_the_window():
    tasks = plan_training_shards(["d3", "d1", "d2", "d1"], START, START + pd.Timedelta(hours=24), HOLDOUT, "robust",
                                 False, FitOptions(), LIMITS, devices_per_shard=2)
    assert [t.devices for t in tasks] == [("d1", "d2"), ("d3",)]
    assert [t.label for t in tasks] == ["training-0000", "training-0001"] and tasks[0].devices_per_read == 8
    with pytest.raises(ValueError, match="devices_per_shard=0"):
        plan_training_shards(["d1"], START, END, HOLDOUT, "robust", False, FitOptions(), LIMITS, 0)
    with pytest.raises(ValueError, match="not a training task"):
        TrainingTask.from_json({"label": "shard-0000"})
