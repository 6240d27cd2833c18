"""Alerts reach a local webhook for each of the four causes, provoked on a real Dagster
instance, once per occurrence; the daily digest sums them; the Teams card path works too."""

import dataclasses
import json

import dagster as dg
import pandas as pd
import pytest

from bscore_assets.alerts.causes import DAY, daily_digest, newest_due_hour, utc_now
from bscore_assets.alerts.sensors import (
    alert_objects,
    alert_on_check_failure,
    alert_on_run_failure,
    build_alert_sensors,
)
from bscore_assets.partitions import hour_key, hour_sensor_key
from bscore_assets.settings import Settings
from resources.alerts import Alert, AlertChannel, AlertDeliveryError
from resources.sql import SqlStore


@pytest.fixture
def settings(tmp_path):
    return Settings.from_env({"BSCORE_HOME": str(tmp_path), "BSCORE_START": "2026-01-01T00:00"})


@pytest.fixture
def instance():
    with dg.DagsterInstance.ephemeral() as instance:
        yield instance


@pytest.fixture
def sql(tmp_path):
    return SqlStore(url=f"sqlite:///{tmp_path / 'bscore.db'}")


def _sensor(settings, name):
    return next(s for s in build_alert_sensors(settings) if s.name == name)


def _tick(sensor, instance, cursor, resources):
    """One evaluation of ``sensor`` as the daemon does it; the cursor it leaves."""
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources)
    sensor(context)
    return context.cursor


@dg.op
def _broken_step():
    raise RuntimeError("disk on fire")


@dg.job
def broken_job():
    _broken_step()


@dg.asset(check_specs=[dg.AssetCheckSpec("rate_ok", asset="scored"), dg.AssetCheckSpec("coverage", asset="scored")])
def scored():
    yield dg.Output(1)
    yield dg.AssetCheckResult(check_name="rate_ok", passed=False, severity=dg.AssetCheckSeverity.ERROR,
                              description="anomaly rate 40% above 10%")
    yield dg.AssetCheckResult(check_name="coverage", passed=False, severity=dg.AssetCheckSeverity.WARN)


def _run_failure_context(instance, channel):
    result = broken_job.execute_in_process(instance=instance, raise_on_error=False)
    assert not result.success
    failure = instance.get_records_for_run(result.run_id, of_type=dg.DagsterEventType.RUN_FAILURE).records[0]
    context = dg.build_run_status_sensor_context(
        sensor_name="alert_on_run_failure", dagster_instance=instance,
        dagster_run=instance.get_run_by_id(result.run_id),
        dagster_event=failure.event_log_entry.dagster_event, resources={"alerts": channel}).for_run_failure()
    return result.run_id, context


def test_a_failed_run_is_posted_with_its_run_id(webhook, instance):
    run_id, context = _run_failure_context(instance, AlertChannel(kind="webhook", url=webhook.url))
    alert_on_run_failure(context)
    assert len(webhook.posts) == 1
    post = webhook.posts[0]
    assert (post["cause"], post["subjects"]["run_id"], post["subjects"]["job"]) == ("run_failure", run_id, "broken_job")
    assert run_id in post["text"]


def test_each_failed_run_is_posted_once_across_ticks(webhook, instance):
    """Through the sensor's own evaluation and Dagster's cursor, as the daemon runs it; runs
    executed in-process (the CLI's) are seen too."""
    resources = {"alerts": AlertChannel(kind="webhook", url=webhook.url)}

    def tick(cursor):
        return alert_on_run_failure.evaluate_tick(
            dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources)).cursor

    cursor = tick(None)
    first = broken_job.execute_in_process(instance=instance, raise_on_error=False).run_id
    cursor = tick(tick(cursor))
    second = broken_job.execute_in_process(instance=instance, raise_on_error=False).run_id
    tick(tick(cursor))
    assert [p["subjects"]["run_id"] for p in webhook.posts] == [first, second]


def test_a_failed_run_is_posted_to_teams_as_an_adaptive_card(webhook, instance):
    run_id, context = _run_failure_context(instance, AlertChannel(kind="teams", url=webhook.url))
    alert_on_run_failure(context)
    [post] = webhook.posts
    [attachment] = post["attachments"]
    assert post["type"] == "message"
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert attachment["content"]["type"] == "AdaptiveCard"
    texts = [block["text"] for block in attachment["content"]["body"]]
    assert texts[0] == "**bscore: run of broken_job failed**"
    assert any(run_id in text for text in texts)


def test_a_check_failed_at_error_is_posted_once_and_a_warn_not(webhook, instance):
    resources = {"alerts": AlertChannel(kind="webhook", url=webhook.url)}
    cursor = _tick(alert_on_check_failure, instance, None, resources)  # alerts start from now
    run_id = dg.materialize([scored], instance=instance, raise_on_error=False).run_id
    cursor = _tick(alert_on_check_failure, instance, cursor, resources)
    [post] = webhook.posts
    assert post["cause"] == "check_failure"
    assert post["subjects"] == {"check": "scored.rate_ok", "run_id": run_id, "partitions": []}
    assert "anomaly rate 40% above 10%" in post["text"]
    _tick(alert_on_check_failure, instance, cursor, resources)
    assert len(webhook.posts) == 1, "the same check failure was posted twice"


def test_an_alert_the_webhook_refused_is_sent_on_the_next_tick(webhook, instance):
    resources = {"alerts": AlertChannel(kind="webhook", url=webhook.url)}
    cursor = _tick(alert_on_check_failure, instance, None, resources)
    dg.materialize([scored], instance=instance, raise_on_error=False)
    webhook.status = 503
    with pytest.raises(AlertDeliveryError, match="BSCORE_ALERT_WEBHOOK_URL: the webhook answered HTTP 503"):
        _tick(alert_on_check_failure, instance, cursor, resources)
    webhook.status, webhook.posts[:] = 200, []
    _tick(alert_on_check_failure, instance, cursor, resources)  # the cursor did not move past it
    assert [p["subjects"]["check"] for p in webhook.posts] == ["scored.rate_ok"]


def _scored(instance, hour, sensor):
    instance.report_runless_asset_event(dg.AssetMaterialization("sensor_predictions",
                                                                partition=hour_sensor_key(hour, sensor)))


def test_the_newest_due_hour_missing_a_sensor_is_posted_once(webhook, instance, settings):
    resources = {"alerts": AlertChannel(kind="webhook", url=webhook.url)}
    sensor = _sensor(settings, "alert_on_late_hour")
    instance.add_dynamic_partitions("sensors", ["s1", "s2"])
    hour = newest_due_hour(utc_now(), settings.scoring_deadline_minutes)
    _scored(instance, hour, "s1")
    cursor = _tick(sensor, instance, None, resources)
    [post] = webhook.posts
    assert post["cause"] == "late_hour"
    assert post["subjects"] == {"hour": hour_key(hour), "sensors": ["s2"]}
    _tick(sensor, instance, cursor, resources)
    assert len(webhook.posts) == 1, "the same late hour was posted twice"


def test_a_scored_hour_is_not_late(webhook, instance, settings):
    sensor = _sensor(settings, "alert_on_late_hour")
    instance.add_dynamic_partitions("sensors", ["s1"])
    hour = newest_due_hour(utc_now(), settings.scoring_deadline_minutes)
    _scored(instance, hour, "s1")
    _tick(sensor, instance, None, {"alerts": AlertChannel(kind="webhook", url=webhook.url)})
    assert webhook.posts == []


def _windows(hour, devices):
    return pd.DataFrame({"device": devices, "sensor": "s1", "ts": [hour + pd.Timedelta(seconds=5)] * len(devices),
                         "value": 1.0, "readings": 1})


def test_a_device_that_stops_sending_is_posted_once_until_it_sends_again(webhook, instance, settings, sql):
    resources = {"alerts": AlertChannel(kind="webhook", url=webhook.url), "sql": sql}
    sensor = _sensor(settings, "alert_on_silent_devices")
    hour = pd.Timestamp("2026-06-01T10:00")
    instance.add_dynamic_partitions("devices", ["d1", "d2", "d3"])
    sql.replace_sensor_values(_windows(hour - pd.Timedelta(hours=5), ["d2"]), hour - pd.Timedelta(hours=5),
                              hour - pd.Timedelta(hours=4))
    sql.replace_sensor_values(_windows(hour, ["d1", "d3"]), hour, hour + pd.Timedelta(hours=1))
    instance.report_runless_asset_event(dg.AssetMaterialization("sensor_aggregates", partition=hour_key(hour)))
    cursor = _tick(sensor, instance, None, resources)
    [post] = webhook.posts
    assert post["cause"] == "silent_devices"
    assert post["subjects"] == {"devices": ["d2"], "through_hour": hour_key(hour)}
    cursor = _tick(sensor, instance, cursor, resources)
    assert len(webhook.posts) == 1, "the same silence was posted twice"
    sql.replace_sensor_values(_windows(hour, ["d1", "d2", "d3"]), hour, hour + pd.Timedelta(hours=1))
    cursor = _tick(sensor, instance, cursor, resources)
    assert json.loads(cursor)["silent"] == [] and len(webhook.posts) == 1


def test_the_digest_sums_the_day(webhook, instance, settings, sql):
    today = utc_now().floor("D")
    broken_job.execute_in_process(instance=instance, raise_on_error=False)
    dg.materialize([scored], instance=instance, raise_on_error=False)
    instance.add_dynamic_partitions("sensors", ["s1", "s2"])
    instance.add_dynamic_partitions("devices", ["d1", "d2"])
    instance.report_runless_asset_event(dg.AssetMaterialization(
        "sensor_predictions", partition=hour_sensor_key(today, "s1"), metadata={"anomalies": 7}))
    sql.replace_sensor_values(_windows(today, ["d1"]), today, today + pd.Timedelta(hours=1))
    instance.report_runless_asset_event(dg.AssetMaterialization("sensor_aggregates", partition=hour_key(today)))
    digest = daily_digest(instance, sql, settings, today, now=today + DAY)
    subjects = digest.subjects
    assert (subjects["runs_failed"], subjects["checks_failed"]) == (1, 1)  # the WARN check is not counted
    assert len(subjects["late_hours"]) == 24  # s2 never scored; s1's 00:00 scored after its deadline
    assert subjects["silent_devices"] == ["d2"]
    assert subjects["anomalies"] == {"s1": 7, "s2": 0}
    AlertChannel(kind="webhook", url=webhook.url).post(digest)
    assert webhook.posts[0]["cause"] == "digest" and "anomalies flagged: 7 (s1: 7)" in webhook.posts[0]["text"]


def test_the_digest_is_posted_once_a_day(webhook, instance, settings, sql):
    sensor = _sensor(dataclasses.replace(settings, alert_digest_hour=0), "alert_daily_digest")
    resources = {"alerts": AlertChannel(kind="webhook", url=webhook.url), "sql": sql}
    cursor = _tick(sensor, instance, None, resources)
    _tick(sensor, instance, cursor, resources)
    [post] = webhook.posts
    assert post["subjects"]["day"] == f"{utc_now().floor('D') - DAY:%Y-%m-%d}"


@pytest.mark.parametrize("kind", ["webhook", "teams"])
@pytest.mark.parametrize("status", [500, None])  # refused, unreachable
def test_a_failed_delivery_names_the_variable_never_the_url(webhook, kind, status):
    url = webhook.url if status else "http://127.0.0.1:9/hooks/sig-SECRET-4f1d2"
    webhook.status = status or 200
    with pytest.raises(AlertDeliveryError) as failure:
        AlertChannel(kind=kind, url=url).post(Alert("run_failure", "t", ["l"]))
    assert "SECRET" not in str(failure.value) and failure.value.__cause__ is None
    assert ("BSCORE_TEAMS_WEBHOOK_URL" if kind == "teams" else "BSCORE_ALERT_WEBHOOK_URL") in str(failure.value)


def test_alerts_are_registered_only_with_a_webhook(tmp_path):
    base = {"BSCORE_HOME": str(tmp_path)}
    assert alert_objects(Settings.from_env(base)) == ([], {})
    sensors, resources = alert_objects(Settings.from_env({**base, "BSCORE_TEAMS_WEBHOOK_URL": "https://x.example/sig"}))
    assert {s.name for s in sensors} == {"alert_on_run_failure", "alert_on_check_failure", "alert_on_late_hour",
                                         "alert_on_silent_devices", "alert_daily_digest"}
    assert resources["alerts"].kind == "teams"
    with pytest.raises(ValueError, match="BSCORE_ALERT_WEBHOOK_URL is not an http") as bad:
        Settings.from_env({**base, "BSCORE_ALERT_WEBHOOK_URL": "ftp://host/SECRET"})
    assert "SECRET" not in str(bad.value)
