"""Configuration from the environment: the one place that reads ``BSCORE_*`` variables.

Every variable has a local default, so bscore runs complete on one machine with nothing set.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pandas as pd

from scoring.fleet import parse_sensor_list

DEFAULT_START = "2026-01-01T00:00"


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


@dataclass(frozen=True)
class Settings:
    home: Path
    start: pd.Timestamp
    sql_url: str
    blob_url: str
    events: str
    compute: str
    sql_url_from_env: bool = False  # then the URL may hold a password: resources refer to the variable
    allowed_lateness_minutes: int = 5
    scoring_minute: int = 15
    retraining_cron: str = "30 0 * * *"
    training_hours: int = 24
    rescoring_hours: int = 6
    silent_after_hours: int = 2
    sensor_min_devices: int = 2  # devices that must send a sensor id before it becomes a partition
    sensors: tuple[str, ...] = ()  # allow-list of sensor ids (BSCORE_SENSORS); empty: none

    @classmethod
    def from_env(cls, env=None) -> "Settings":
        env = os.environ if env is None else env
        home = Path(env.get("BSCORE_HOME", "./.bscore")).resolve()
        raw_start = env.get("BSCORE_START", DEFAULT_START)
        try:
            start = pd.Timestamp(raw_start).floor("h")
        except ValueError:
            raise ValueError(f"BSCORE_START={raw_start!r} is not an ISO-8601 hour such as 2026-01-01T00:00") from None
        return cls(
            home=home,
            start=start,
            sql_url=env.get("BSCORE_SQL_URL", f"sqlite:///{home / 'bscore.db'}"),
            sql_url_from_env="BSCORE_SQL_URL" in env,
            blob_url=env.get("BSCORE_BLOB_URL", str(home / "blob")),
            events=env.get("BSCORE_EVENTS", "local"),
            compute=env.get("BSCORE_COMPUTE", "local"),
            allowed_lateness_minutes=int(env.get("BSCORE_ALLOWED_LATENESS_MINUTES", "5")),
            scoring_minute=int(env.get("BSCORE_SCORING_MINUTE", "15")),
            retraining_cron=env.get("BSCORE_RETRAINING_CRON", "30 0 * * *"),
            training_hours=int(env.get("BSCORE_TRAINING_HOURS", "24")),
            rescoring_hours=int(env.get("BSCORE_RESCORING_HOURS", "6")),
            silent_after_hours=int(env.get("BSCORE_SILENT_AFTER_HOURS", "2")),
            sensor_min_devices=_whole_number_at_least_one(env, "BSCORE_SENSOR_MIN_DEVICES", 2),
            sensors=parse_sensor_list(env.get("BSCORE_SENSORS")),
        )

    @property
    def dagster_home(self) -> Path:
        return self.home / "dagster"

    @property
    def landing(self) -> Path:
        return self.home / "landing"


class PipelineSettings(dg.ConfigurableResource):
    """Tunables of the pipeline that are not outside systems (resource key ``pipeline``)."""

    window_seconds: int = 5
    anomaly_rate_warn: float = 0.02
    anomaly_rate_error: float = 0.10
    training_hours: int = 24
    late_policy: str = "reopen"  # or "deadletter": readings for an already aggregated hour
