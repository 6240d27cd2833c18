"""Configuration from the environment: the one place that reads ``BSCORE_*`` variables.

Every variable has a local default, so bscore runs complete on one machine with nothing set.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import pandas as pd

from resources.sql import validate_sql_url
from scoring.entra_sql import check_entra_url, sql_auth
from scoring.detectors import DEFAULT_FALSE_ALARM_RATE, DEFAULT_KIND, TRAINABLE
from scoring.fleet import parse_sensor_list
from scoring.verdicts import METHODS as DEVICE_VERDICT_METHODS

DEFAULT_START = "2026-01-01T00:00"
# Days each kind of data is kept by default (the retain_<kind>_days fields).
RETENTION_DAYS = {"landing": 7, "raw": 30, "deadletter": 30, "model": 30, "prediction": 90, "orphan": 2,
                  "sql": 90, "run": 90}
BLOB_SCHEMES = ("az", "https")


def _start(env) -> pd.Timestamp:
    raw = env.get("BSCORE_START", DEFAULT_START)
    expected = "a UTC hour in ISO-8601 without a zone, such as 2026-01-01T00:00"
    try:
        start = pd.Timestamp(raw.strip())
    except (ValueError, TypeError):
        raise ValueError(f"BSCORE_START={raw!r} is not {expected}") from None
    if start is pd.NaT:
        raise ValueError(f"BSCORE_START={raw!r} is empty: unset it, or set it to {expected}")
    if start.tzinfo is not None:
        raise ValueError(f"BSCORE_START={raw!r} has a time zone; partitions are in UTC: give {expected}")
    return start.floor("h")


def _integer(env, name: str, default: int, minimum: int, unit: str, maximum: int | None = None) -> int:
    raw = env.get(name)
    if raw is None:
        return default
    bounds = f"{minimum}..{maximum}" if maximum is not None else f"{minimum} or more"
    try:
        value = int(raw.strip())
    except ValueError:
        raise ValueError(f"{name}={raw!r} must be a whole number of {unit} ({bounds}), such as {default}") from None
    if value < minimum or (maximum is not None and value > maximum):
        raise ValueError(f"{name}={raw!r} must be a whole number of {unit} ({bounds}), such as {default}")
    return value


def _choice(env, name: str, default: str, allowed: tuple) -> str:
    value = env.get(name, default)
    if value not in allowed:
        raise ValueError(f"{name}={value!r} must be one of {', '.join(allowed)}")
    return value


def _cron(env, name: str, default: str) -> str:
    from dagster._utils.schedules import is_valid_cron_string

    value = env.get(name, default)
    if not is_valid_cron_string(value):
        raise ValueError(f"{name}={value!r} is not a cron expression such as {default!r} (minute hour day month weekday)")
    return value


def validate_blob_url(url: str) -> None:
    """A folder, ``az://<container>[/<prefix>]`` or ``https://<account>.blob.core.windows.net/<container>``."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else None
    if scheme is not None and scheme not in BLOB_SCHEMES:
        raise ValueError(f"BSCORE_BLOB_URL: scheme {scheme + '://'!r} is not supported; give a folder, "
                         "az://<container>[/<prefix>] (with AZURE_STORAGE_CONNECTION_STRING) or "
                         "https://<account>.blob.core.windows.net/<container>[/<prefix>]")
    if not url.strip():
        raise ValueError("BSCORE_BLOB_URL is empty: unset it for the local folder, or give a folder or an az:// or https:// URL")


def _rate(env, name: str, default: float, low: float = 0.0, high: float = 1.0) -> float:
    """A share in ``(low, high)`` from ``env[name]`` (a number such as 0.005, not a percentage)."""
    raw = env.get(name)
    if raw is None:
        return default
    try:
        value = float(raw.strip())
    except ValueError:
        value = float("nan")
    if not low < value < high:
        raise ValueError(f"{name}={raw!r} must be a share between {low:g} and {high:g} (exclusive), such as {default}")
    return value


def _whole_number_at_least_one(env, name: str, default: int) -> int:
    """A whole number of at least 1 from ``env[name]``; a clear error naming the variable otherwise."""
    raw = env.get(name, str(default))
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{name}={raw!r} is not a whole number of at least 1")
    return value


def _check_rates(env) -> dict:
    warn = _rate(env, "BSCORE_ANOMALY_RATE_WARN", 0.02)
    error = _rate(env, "BSCORE_ANOMALY_RATE_ERROR", max(0.10, warn))
    if error < warn:
        raise ValueError(f"BSCORE_ANOMALY_RATE_ERROR={error} is below BSCORE_ANOMALY_RATE_WARN={warn}: "
                         "ERROR must be at least WARN")
    return {"anomaly_rate_warn": warn, "anomaly_rate_error": error}


def _webhook_set(env, name: str) -> bool:
    """Whether the webhook URL ``env[name]`` is given; an error naming the variable (never its
    value: the URL is a secret) when it is not an http(s) URL."""
    raw = env.get(name)
    if raw is None or not raw.strip():
        return False
    if not raw.strip().lower().startswith(("https://", "http://")):
        raise ValueError(f"{name} is not an http(s) URL: give the webhook's full https://... address, "
                         "or unset it for no alerts there")
    return True


def _env(name: str, meaning: str, default: str | None = None) -> dict:
    """A field's metadata: the variable it is read from, what it means, and its default as the
    docs show it when the value alone would not say it (a path under ``BSCORE_HOME``, "unset").
    ``docs/configuration.md`` is generated from these (``python -m bscore_assets.docs_reference``)."""
    return {"env": name, "meaning": meaning, "default": default}


@dataclass(frozen=True)
class Settings:
    home: Path = field(metadata=_env(
        "BSCORE_HOME", "where local state lives: SQLite database, blob folder, landing folder, Dagster instance, "
        "`id_mapping.csv`, labels", "`./.bscore`"))
    start: pd.Timestamp = field(metadata=_env(
        "BSCORE_START", "first hour of the hourly partitions, UTC, without a zone (older data needs an older start; "
        "readings before it are refused)", f"`{DEFAULT_START}`"))
    sql_url: str = field(metadata=_env(
        "BSCORE_SQL_URL", "the SQL database: `postgresql+psycopg://…`, `mssql+pyodbc://…` (Azure SQL); special "
        "characters of the password URL-encoded (`@` as `%40`); never printed with its password",
        "`sqlite:///$BSCORE_HOME/bscore.db`"))
    blob_url: str = field(metadata=_env(
        "BSCORE_BLOB_URL", "the blob store: a folder, `az://<container>[/<prefix>]` with "
        "`AZURE_STORAGE_CONNECTION_STRING`, or `https://<account>.blob.core.windows.net/<container>[/<prefix>]` "
        "with `DefaultAzureCredential`; any other `scheme://` is refused", "`$BSCORE_HOME/blob` (a folder)"))
    events: str = field(metadata=_env(
        "BSCORE_EVENTS", "the event source: `local` (the folder `$BSCORE_HOME/landing`) or `eventhub` "
        "(the `EVENTHUB_*` variables, [azure.md](azure.md#event-hubs))"))
    compute: str = field(metadata=_env(
        "BSCORE_COMPUTE", "where shards are scored: `local` (a process pool) or `azureml` (command jobs, "
        "the `AZUREML_*` variables, [azure.md](azure.md#azure-ml-scoring-as-command-jobs))"))
    aggregation: str = field(default="local", metadata=_env(
        "BSCORE_AGGREGATION", "`local`, or `asa`: Stream Analytics writes raw readings and aggregates and Dagster "
        "records them ([azure.md](azure.md#stream-analytics-aggregation-off-the-dagster-host))"))
    sql_auth: str = field(default="password", metadata=_env(
        "BSCORE_SQL_AUTH", "how the host and the scoring jobs sign in to SQL: `password` (whatever the URL holds) "
        "or `entra` (a Microsoft Entra token from `DefaultAzureCredential` per connection, for Azure SQL and Azure "
        "PostgreSQL; the URL then holds no password, [azure.md](azure.md#sql-with-managed-identity))"))
    sql_url_from_env: bool = False  # then the URL may hold a password: resources refer to the variable
    allowed_lateness_minutes: int = field(default=5, metadata=_env(
        "BSCORE_ALLOWED_LATENESS_MINUTES", "minutes (0-59) after an hour closes before automation ingests it "
        "(with `asa`: the job's late-arrival tolerance, at most 9)"))
    retraining_cron: str = field(default="30 0 * * *", metadata=_env(
        "BSCORE_RETRAINING_CRON", "when automation retrains every device (cron, UTC)"))
    training_hours: int = field(default=24, metadata=_env(
        "BSCORE_TRAINING_HOURS", "the training window, in hours, of the retraining cron and of `bscore train` "
        "without `--from/--to` (its last hour is the gate's hold-out)"))
    rescoring_hours: int = field(default=6, metadata=_env(
        "BSCORE_RESCORING_HOURS", "automation's look-back: closed hours ingested, aggregated and (re)scored"))
    silent_after_hours: int = field(default=2, metadata=_env(
        "BSCORE_SILENT_AFTER_HOURS", "hours without windows before a device is reported as stopped sending"))
    scoring_deadline_minutes: int = field(default=30, metadata=_env(
        "BSCORE_SCORING_DEADLINE_MINUTES", "freshness: minute (0-59) past the next hour by which an hour must be "
        "aggregated and scored (freshness policy, `newest_hour_scored` check, late-hour alert)"))
    # DAGSTER_HOME, when set: the CLI, daemon and UI share it
    dagster_home_override: Path | None = field(default=None, metadata=_env(
        "DAGSTER_HOME", "the Dagster instance the CLI uses; set it to the daemon's and webserver's",
        "`$BSCORE_HOME/dagster`"))
    sensor_min_devices: int = field(default=2, metadata=_env(
        "BSCORE_SENSOR_MIN_DEVICES", "devices that must send a sensor id before it becomes a `sensors` partition "
        "(capped at the number of devices, so a one-device install works)"))
    device_max_sensors: int = field(default=64, metadata=_env(
        "BSCORE_DEVICE_MAX_SENSORS", "a sensor id sent by one device becomes a partition when that device sends at "
        "most this many ids (the junk-sensor guard, [reliability.md](reliability.md))"))
    sensors: tuple[str, ...] = field(default=(), metadata=_env(
        "BSCORE_SENSORS", "comma-separated sensor ids (`1,2,flow_rate`): exactly these become partitions, and "
        "readings of other sensors are dead-lettered (`undeclared sensor`)", "unset (no allow-list)"))
    detector: str = field(default=DEFAULT_KIND, metadata=_env(
        "BSCORE_DETECTOR", "the detector kind `bscore train` and the retraining cron fit: "
        f"{' or '.join(f'`{k}`' for k in TRAINABLE)} ([detectors.md](detectors.md))"))
    false_alarm_rate: float = field(default=DEFAULT_FALSE_ALARM_RATE, metadata=_env(
        "BSCORE_FALSE_ALARM_RATE", "the share (0-0.5) of a device's training windows its models may flag, split "
        "evenly over its sensors ([detectors.md](detectors.md))"))
    anomaly_rate_warn: float = field(default=0.02, metadata=_env(
        "BSCORE_ANOMALY_RATE_WARN", "`anomaly_rate` check WARN, and the retraining gate's hold-out limit per "
        "sensor"))
    anomaly_rate_error: float = field(default=0.10, metadata=_env(
        "BSCORE_ANOMALY_RATE_ERROR", "`anomaly_rate` check ERROR (at least the WARN rate)",
        "`0.1`, or the WARN rate when that is higher"))
    device_vote_min_sensors: int = field(default=1, metadata=_env(
        "BSCORE_DEVICE_VOTE_MIN_SENSORS", "flagged sensors that make a device window anomalous "
        "([verdicts.md](verdicts.md))"))
    device_verdict: str = field(default="vote", metadata=_env(
        "BSCORE_DEVICE_VERDICT", "how a device window's verdict is reached: `vote` over its sensors or "
        "`multivariate` (its device model; the vote for devices without one) ([verdicts.md](verdicts.md))"))
    # Alerts (docs/alerts.md): whether the webhook variables are set; resources read the URLs
    # (secrets) through the variables' names, so they never sit here.
    teams_webhook_from_env: bool = field(default=False, metadata=_env(
        "BSCORE_TEAMS_WEBHOOK_URL", "a Teams incoming webhook for alerts (a secret: never logged; "
        "[alerts.md](alerts.md))", "unset (no alerts)"))
    alert_webhook_from_env: bool = field(default=False, metadata=_env(
        "BSCORE_ALERT_WEBHOOK_URL", "any JSON webhook for alerts, used when no Teams URL is set (a secret)",
        "unset (no alerts)"))
    alert_digest_hour: int = field(default=7, metadata=_env(
        "BSCORE_ALERT_DIGEST_HOUR", "the UTC hour (0-23) after which the previous day's alert digest is posted"))
    # Retention (docs/operations.md, "Retention"): days each kind of data is kept.
    retain_landing_days: int = field(default=7, metadata=_env(
        "BSCORE_RETAIN_LANDING_DAYS", "days a landing file is kept after the drain has read it whole"))
    retain_raw_days: int = field(default=30, metadata=_env(
        "BSCORE_RETAIN_RAW_DAYS", "days of raw readings (blob `raw/`) kept; older hours are retired"))
    retain_deadletter_days: int = field(default=30, metadata=_env(
        "BSCORE_RETAIN_DEADLETTER_DAYS", "days a dead letter (and a replay or export record) is kept after "
        "retention first saw it"))
    retain_model_days: int = field(default=30, metadata=_env(
        "BSCORE_RETAIN_MODEL_DAYS", "days a superseded or rejected model version is kept (each device's current "
        "and previous versions are always kept)"))
    retain_prediction_days: int = field(default=90, metadata=_env(
        "BSCORE_RETAIN_PREDICTION_DAYS", "days of prediction parts and verdict files (blob `predictions/`, "
        "`verdicts/`) kept; older hours are retired"))
    retain_orphan_days: int = field(default=2, metadata=_env(
        "BSCORE_RETAIN_ORPHAN_DAYS", "days a prediction part no manifest names, or an unfinished model version, "
        "is kept after retention first saw it (a killed run's leftovers)"))
    retain_sql_days: int = field(default=90, metadata=_env(
        "BSCORE_RETAIN_SQL_DAYS", "days of SQL windows, predictions and device verdicts kept; older hours are "
        "retired"))
    retain_run_days: int = field(default=90, metadata=_env(
        "BSCORE_RETAIN_RUN_DAYS", "days of finished Dagster runs and their event logs kept (and of schedule "
        "ticks, in a new instance's `dagster.yaml`)"))
    retention_cron: str = field(default="40 2 * * *", metadata=_env(
        "BSCORE_RETENTION_CRON", "when `retention_schedule` applies the retention policy (cron, UTC; the schedule "
        "is off until turned on)"))

    @classmethod
    def from_env(cls, env=None) -> "Settings":
        """Read and validate every ``BSCORE_*`` variable; a bad one raises ``ValueError`` naming
        the variable and the form expected (never its value when it may hold a secret)."""
        env = os.environ if env is None else env
        home = Path(env.get("BSCORE_HOME", "./.bscore")).resolve()
        sql_url = env.get("BSCORE_SQL_URL", f"sqlite:///{home / 'bscore.db'}")
        validate_sql_url(sql_url, "BSCORE_SQL_URL")
        auth = sql_auth(env.get("BSCORE_SQL_AUTH"))
        if auth == "entra":
            check_entra_url(sql_url, "BSCORE_SQL_URL")
        blob_url = env.get("BSCORE_BLOB_URL", str(home / "blob"))
        validate_blob_url(blob_url)
        return cls(
            home=home,
            start=_start(env),
            sql_url=sql_url,
            sql_url_from_env="BSCORE_SQL_URL" in env,
            sql_auth=auth,
            blob_url=blob_url,
            events=_choice(env, "BSCORE_EVENTS", "local", ("local", "eventhub")),
            compute=_choice(env, "BSCORE_COMPUTE", "local", ("local", "azureml")),
            aggregation=_choice(env, "BSCORE_AGGREGATION", "local", ("local", "asa")),
            allowed_lateness_minutes=_integer(env, "BSCORE_ALLOWED_LATENESS_MINUTES", 5, 0, "minutes", maximum=59),
            retraining_cron=_cron(env, "BSCORE_RETRAINING_CRON", "30 0 * * *"),
            training_hours=_integer(env, "BSCORE_TRAINING_HOURS", 24, 1, "hours"),
            rescoring_hours=_integer(env, "BSCORE_RESCORING_HOURS", 6, 0, "hours"),
            silent_after_hours=_integer(env, "BSCORE_SILENT_AFTER_HOURS", 2, 1, "hours"),
            scoring_deadline_minutes=_integer(env, "BSCORE_SCORING_DEADLINE_MINUTES", 30, 0, "minute past the hour",
                                              maximum=59),
            dagster_home_override=Path(env["DAGSTER_HOME"]).resolve() if env.get("DAGSTER_HOME") else None,
            sensor_min_devices=_whole_number_at_least_one(env, "BSCORE_SENSOR_MIN_DEVICES", 2),
            device_max_sensors=_whole_number_at_least_one(env, "BSCORE_DEVICE_MAX_SENSORS", 64),
            sensors=parse_sensor_list(env.get("BSCORE_SENSORS")),
            detector=_choice(env, "BSCORE_DETECTOR", DEFAULT_KIND, TRAINABLE),
            false_alarm_rate=_rate(env, "BSCORE_FALSE_ALARM_RATE", DEFAULT_FALSE_ALARM_RATE, high=0.5),
            **_check_rates(env),
            device_vote_min_sensors=_integer(env, "BSCORE_DEVICE_VOTE_MIN_SENSORS", 1, 1, "sensors"),
            device_verdict=_choice(env, "BSCORE_DEVICE_VERDICT", "vote", DEVICE_VERDICT_METHODS),
            teams_webhook_from_env=_webhook_set(env, "BSCORE_TEAMS_WEBHOOK_URL"),
            alert_webhook_from_env=_webhook_set(env, "BSCORE_ALERT_WEBHOOK_URL"),
            alert_digest_hour=_integer(env, "BSCORE_ALERT_DIGEST_HOUR", 7, 0, "hours (UTC)", maximum=23),
            retain_landing_days=_integer(env, "BSCORE_RETAIN_LANDING_DAYS", RETENTION_DAYS["landing"], 1, "days"),
            retain_raw_days=_integer(env, "BSCORE_RETAIN_RAW_DAYS", RETENTION_DAYS["raw"], 1, "days"),
            retain_deadletter_days=_integer(env, "BSCORE_RETAIN_DEADLETTER_DAYS", RETENTION_DAYS["deadletter"], 1,
                                            "days"),
            retain_model_days=_integer(env, "BSCORE_RETAIN_MODEL_DAYS", RETENTION_DAYS["model"], 1, "days"),
            retain_prediction_days=_integer(env, "BSCORE_RETAIN_PREDICTION_DAYS", RETENTION_DAYS["prediction"], 1,
                                            "days"),
            retain_orphan_days=_integer(env, "BSCORE_RETAIN_ORPHAN_DAYS", RETENTION_DAYS["orphan"], 1, "days"),
            retain_sql_days=_integer(env, "BSCORE_RETAIN_SQL_DAYS", RETENTION_DAYS["sql"], 1, "days"),
            retain_run_days=_integer(env, "BSCORE_RETAIN_RUN_DAYS", RETENTION_DAYS["run"], 1, "days"),
            retention_cron=_cron(env, "BSCORE_RETENTION_CRON", "40 2 * * *"),
        )

    @property
    def dagster_home(self) -> Path:
        """The Dagster instance: ``DAGSTER_HOME`` when set (the one the daemon and UI use), else
        ``$BSCORE_HOME/dagster``."""
        return self.dagster_home_override or self.home / "dagster"

    @property
    def landing(self) -> Path:
        return self.home / "landing"


class PipelineSettings(dg.ConfigurableResource):
    """Tunables of the pipeline that are not outside systems (resource key ``pipeline``)."""

    window_seconds: int = 5
    anomaly_rate_warn: float = 0.02
    anomaly_rate_error: float = 0.10
    # A device window is anomalous when any of its sensors is (default vote), so its rate runs
    # several times a sensor's: about the sensor thresholds over a device of five sensors.
    device_anomaly_rate_warn: float = 0.10
    device_anomaly_rate_error: float = 0.40
    device_vote_min_sensors: int = 1  # BSCORE_DEVICE_VOTE_MIN_SENSORS (scoring.verdicts)
    device_verdict: str = "vote"  # BSCORE_DEVICE_VERDICT: vote or multivariate (scoring.verdicts)
    labels_dir: str = ""  # labels files (bscore ingest --label-column): the verdicts' figures against them
    training_hours: int = 24
    detector: str = DEFAULT_KIND  # the kind training fits unless the run's config names one
    false_alarm_rate: float = DEFAULT_FALSE_ALARM_RATE
    declared_sensors: list[str] = []  # BSCORE_SENSORS: readings of other sensors are dead-lettered
    late_policy: str = "reopen"  # or "deadletter": readings for an already aggregated hour
