"""Retention: the plan lists what is past its days per kind, a dry run removes nothing, applying
removes exactly the plan and records the retired hours, and a retired hour is refused by name.

The stores are the local ones on a temporary folder (blob, SQLite, landing) and a Dagster
instance of its own; ``now`` is given, so ages are exact.
"""

import json
import os

import dagster as dg
import pandas as pd
import pytest

from bscore_assets.retention.apply import apply_plan
from bscore_assets.retention.plan import describe_plan, plan_retention
from bscore_assets.retention.policy import RetentionPolicy
from bscore_assets.retention.records import RETIRED_KEY, refuse_retired_hours, retired_before, retired_hours
from bscore_assets.settings import Settings
from resources.blob import LocalBlobStore
from resources.events import LocalEventSource
from resources.sql import SqlStore
from scoring.blob_layout import prediction_manifest_key, prediction_part_key
from scoring.prediction_layout import manifest_bytes

NOW = pd.Timestamp("2026-06-01T12:30")
OLD_HOUR = pd.Timestamp("2026-02-01T05:00")  # past every hourly kind's days (90 at most)
RAW_ONLY_OLD = pd.Timestamp("2026-04-20T05:00")  # past raw's 30 days, within SQL's and predictions' 90
RECENT_HOUR = pd.Timestamp("2026-05-31T05:00")
POLICY = RetentionPolicy.from_settings(Settings.from_env({}))


def stamp(days_ago: float) -> str:
    return f"{NOW - pd.Timedelta(days=days_ago):%Y%m%dT%H%M%S}"


@pytest.fixture
def stores(tmp_path):
    blob = LocalBlobStore(root=str(tmp_path / "blob"))
    sql = SqlStore(url=f"sqlite:///{tmp_path / 'bscore.db'}")
    events = LocalEventSource(landing=str(tmp_path / "landing"))
    return blob, sql, events


def windows(hour: pd.Timestamp, devices=("d1", "d2")) -> pd.DataFrame:
    ends = [hour + pd.Timedelta(minutes=m) for m in (10, 30, 60)]
    return pd.DataFrame([(ts, d, "1", 1.0, 4) for ts in ends for d in devices],
                        columns=["ts", "device", "sensor", "value", "readings"])


def fill(blob, sql, events):
    """Every kind of data, some past its days and some not."""
    for hour in (OLD_HOUR, RAW_ONLY_OLD, RECENT_HOUR):
        blob.write_bytes(f"raw/{hour:%Y-%m-%dT%H}/part-abc-0-3599-10.parquet", b"r" * 100)
        sql.replace_sensor_values(windows(hour), hour, hour + pd.Timedelta(hours=1))
        part = prediction_part_key(hour, "1", "d1", "d2", "run1")
        blob.write_bytes(part, b"p" * 200)
        blob.write_bytes(prediction_manifest_key(hour, "1"), manifest_bytes([part], 6))
        blob.write_bytes(prediction_part_key(hour, "1", "d1", "d2", "killed"), b"o" * 50)  # an orphan
        blob.write_bytes(f"verdicts/{hour:%Y-%m-%dT%H}.parquet", b"v" * 30)
        frame = windows(hour).assign(score=0.1, is_anomaly=False, model_version="v")
        sql.replace_predictions(frame.drop(columns="readings"), hour, hour + pd.Timedelta(hours=1), ["1"])
    versions = {"a": 60, "b": 50, "previous": 40, "current": 35, "rejected": 31, "fresh": 5}
    for name, age in versions.items():
        base = f"models/d1/{name}-{stamp(age)}-0123456789"
        blob.write_bytes(f"{base}/params.npz", b"m" * 1000)
        blob.write_bytes(f"{base}/bundle.json", b"{}")
    blob.write_bytes("models/d1/current.json", json.dumps({"version": f"current-{stamp(35)}-0123456789"}).encode())
    blob.write_bytes(f"models/d1/killed-{stamp(10)}-0123456789/params.npz", b"k" * 70)  # unfinished
    blob.write_bytes(f"models/d2/only-{stamp(80)}-0123456789/params.npz", b"x")  # no current.json: kept
    blob.write_bytes(f"models/d2/only-{stamp(80)}-0123456789/bundle.json", b"{}")
    blob.write_bytes("deadletter/abc.parquet", b"d" * 40)
    events.publish(['{"ts": "2026-05-01T00:00:01", "device": "d1", "sensor": "1", "value": 1}'])
    events.publish(['{"ts": "2026-05-01T00:00:02", "device": "d1", "sensor": "1", "value": 2}'])
    batch = events.receive(max_events=1)
    events.commit(batch)  # the first file is drained, the second is not
    old = (NOW - pd.Timedelta(days=8)).timestamp()
    for path in events.drained_files() + [events._dir / "000000000002.jsonl"]:
        os.utime(path, (old, old))


def test_the_plan_lists_what_is_past_its_days_per_kind_and_a_dry_run_removes_nothing(stores):
    blob, sql, events = stores
    fill(blob, sql, events)
    before = blob.list("")
    plan = plan_retention(POLICY, NOW, blob, sql, events)
    targets = {kind: sorted(item.target for item in plan.of(kind)) for kind in POLICY.days}
    assert targets["raw"] == [f"raw/{OLD_HOUR:%Y-%m-%dT%H}/part-abc-0-3599-10.parquet",
                              f"raw/{RAW_ONLY_OLD:%Y-%m-%dT%H}/part-abc-0-3599-10.parquet"]
    assert [t.split("/")[-1] for t in targets["prediction"]] == [
        "_manifest.json", "part-d1--d2--killed.parquet", "part-d1--d2--run1.parquet", "2026-02-01T05.parquet"]
    assert all(t.startswith(("predictions/2026-02-01T05/", "verdicts/2026-02-01T05")) for t in targets["prediction"])
    assert [t.split("/")[2].split("-")[0] for t in targets["model"]] == ["a", "a", "b", "b", "rejected", "rejected"]
    assert targets["landing"] == [str(events._dir / "000000000001.jsonl")]
    assert targets["sql"] == ["predictions", "sensor_values"]
    assert {item.target: item.rows for item in plan.of("sql")} == {"sensor_values": 6, "predictions": 6}
    assert targets["deadletter"] == [] and targets["orphan"] == []  # first seen now: they wait their days
    totals = plan.totals()
    assert totals["raw"] == {"count": 2, "bytes": 200, "days": 30}
    assert totals["model"]["bytes"] == 3 * (1000 + 2)
    assert plan.retire == {"raw": pd.Timestamp("2026-05-02T12:00"), "prediction": pd.Timestamp("2026-03-03T12:00"),
                           "sql": pd.Timestamp("2026-03-03T12:00")}
    assert any(line.startswith("raw ") and "2 item(s)" in line for line in describe_plan(plan))
    assert blob.list("") == before and not blob.exists(RETIRED_KEY)
    assert len(sql.read_sensor_values()) == 18


def test_applying_removes_exactly_the_plan_and_records_the_retired_hours(stores):
    blob, sql, events = stores
    fill(blob, sql, events)
    apply_plan(plan_retention(POLICY, NOW, blob, sql, events), blob, sql)
    assert blob.list("raw/") == [f"raw/{RECENT_HOUR:%Y-%m-%dT%H}/part-abc-0-3599-10.parquet"]
    assert not blob.list(f"predictions/{OLD_HOUR:%Y-%m-%dT%H}/")
    assert blob.exists(prediction_manifest_key(RAW_ONLY_OLD, "1"))
    kept_versions = sorted({key.split("/")[2].split("-")[0] for key in blob.list("models/d1/") if key.count("/") == 3})
    assert kept_versions == ["current", "fresh", "killed", "previous"]
    assert blob.list("models/d2/")  # no current version named: nothing of it goes
    window_hours = (sql.read_sensor_values()["ts"] - pd.Timedelta(seconds=1)).dt.floor("h")
    assert sorted(window_hours.unique()) == [RAW_ONLY_OLD, RECENT_HOUR]
    assert len(sql.read_predictions()) == 12
    assert sorted(p.name for p in events._dir.glob("*.jsonl")) == ["000000000002.jsonl"]
    assert retired_before(blob) == {"raw": pd.Timestamp("2026-05-02T12:00"),
                                    "prediction": pd.Timestamp("2026-03-03T12:00"),
                                    "sql": pd.Timestamp("2026-03-03T12:00")}
    # Dead letters and orphans go once they have waited their days since first seen.
    later = NOW + pd.Timedelta(days=31)
    plan = plan_retention(POLICY, later, blob, sql, events)
    assert [item.target for item in plan.of("deadletter")] == ["deadletter/abc.parquet"]
    orphans = sorted(item.target for item in plan.of("orphan"))
    assert orphans == sorted([f"models/d1/killed-{stamp(10)}-0123456789/params.npz"]
                             + [prediction_part_key(h, "1", "d1", "d2", "killed") for h in (RAW_ONLY_OLD, RECENT_HOUR)])
    apply_plan(plan, blob, sql)
    assert not blob.list("deadletter/") and not any("killed" in key for key in blob.list(""))


def test_a_retired_hour_is_refused_by_name_and_kept_hours_are_not(stores):
    blob, sql, events = stores
    fill(blob, sql, events)
    apply_plan(plan_retention(POLICY, NOW, blob, sql, events), blob, sql)
    with pytest.raises(dg.Failure, match=r"sensor_aggregates: hour\(s\) 2026-04-20T05 \(raw removed\)"):
        refuse_retired_hours(blob, "sensor_aggregates", [RAW_ONLY_OLD, RECENT_HOUR])
    refuse_retired_hours(blob, "sensor_predictions", [RAW_ONLY_OLD])  # its aggregates are still in SQL
    assert retired_hours(blob, "device_verdicts", [OLD_HOUR, RAW_ONLY_OLD]) == {OLD_HOUR: "prediction"}


def test_the_retired_record_never_moves_back(stores):
    blob, sql, events = stores
    apply_plan(plan_retention(POLICY, NOW, blob, sql), blob, sql)
    apply_plan(plan_retention(POLICY, NOW - pd.Timedelta(days=10), blob, sql), blob, sql)
    assert retired_before(blob)["raw"] == pd.Timestamp("2026-05-02T12:00")


def test_finished_runs_past_their_days_are_deleted_with_their_event_logs(stores, tmp_path):
    blob, sql, _ = stores

    @dg.op
    def noop():
        return 1

    @dg.job
    def tiny():
        noop()

    (tmp_path / "dagster").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster")) as instance:
        run_id = tiny.execute_in_process(instance=instance).run_id
        assert instance.all_logs(run_id)
        now = pd.Timestamp.now("UTC").tz_localize(None)
        assert plan_retention(POLICY, now, blob, sql, instance=instance).of("run") == []
        plan = plan_retention(POLICY, now + pd.Timedelta(days=91), blob, sql, instance=instance)
        assert [item.target for item in plan.of("run")] == [run_id]
        apply_plan(plan, blob, sql, instance)
        assert instance.get_run_by_id(run_id) is None
        assert instance.all_logs(run_id) == []


def test_retention_settings_are_validated_by_name():
    settings = Settings.from_env({"BSCORE_RETAIN_SQL_DAYS": "14", "BSCORE_RETENTION_CRON": "0 3 * * 0"})
    assert RetentionPolicy.from_settings(settings).days["sql"] == 14
    assert settings.retention_cron == "0 3 * * 0"
    with pytest.raises(ValueError, match="BSCORE_RETAIN_ORPHAN_DAYS='-1' must be a whole number of days"):
        Settings.from_env({"BSCORE_RETAIN_ORPHAN_DAYS": "-1"})
    with pytest.raises(ValueError, match="BSCORE_RETENTION_CRON='daily' is not a cron expression"):
        Settings.from_env({"BSCORE_RETENTION_CRON": "daily"})


def test_the_retention_job_and_its_schedule_are_defined_and_the_schedule_is_off_by_default():
    from bscore_assets.definitions import build_defs

    defs = build_defs(Settings.from_env({"BSCORE_RETENTION_CRON": "15 4 * * *"}))
    schedule = next(s for s in defs.schedules if s.name == "retention_schedule")
    assert schedule.cron_schedule == "15 4 * * *" and schedule.job_name == "retention_job"
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED


def test_bscore_retention_dry_run_lists_each_kind_and_removes_nothing_then_applies(bscore_home):
    from click.testing import CliRunner

    from bscore_assets.cli import main

    blob = LocalBlobStore(root=str(bscore_home / "blob"))
    old_part = "raw/2020-01-01T00/part-abc-0-3599-10.parquet"
    blob.write_bytes(old_part, b"r" * 2_000_000)
    blob.write_bytes(f"raw/{pd.Timestamp.now('UTC'):%Y-%m-%dT%H}/part-abc-0-3599-10.parquet", b"r")
    dry = CliRunner().invoke(main, ["retention", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    raw_line = next(line for line in dry.output.splitlines() if line.strip().startswith("raw "))
    assert "1 item(s)" in raw_line and "2.0 MB" in raw_line and "older than 30 day(s)" in raw_line
    assert {line.split()[0] for line in dry.output.splitlines()[1:-1]} == set(POLICY.days)
    assert "dry run: nothing removed" in dry.output and blob.exists(old_part)
    applied = CliRunner().invoke(main, ["retention"])
    assert applied.exit_code == 0, applied.output
    assert not blob.exists(old_part) and len(blob.list("raw/")) == 1
    assert "2020-01-01T00" < json.loads(blob.read_bytes(RETIRED_KEY))["raw"]


def test_a_new_local_instance_purges_ticks_after_the_run_days(tmp_path):
    from bscore_assets.operations import local_instance

    settings = Settings.from_env({"BSCORE_HOME": str(tmp_path), "BSCORE_RETAIN_RUN_DAYS": "30"})
    retention = local_instance(settings).get_settings("retention")
    assert retention == {"schedule": {"purge_after_days": 30},
                         "sensor": {"purge_after_days": {"skipped": 7, "failure": 30, "success": 30}}}
