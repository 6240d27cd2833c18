"""Configuration from the environment: the one place that reads ``BSCORE_*`` variables.

Every variable has a local default, so bscore runs complete on one machine with nothing set.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pandas as pd

DEFAULT_START = "2026-01-01T00:00"


@dataclass(frozen=True)
class Settings:
    home: Path
    start: pd.Timestamp
    sql_url: str
    blob_url: str
    events: str
    compute: str
    aggregation: str = "local"  # or "asa": Stream Analytics aggregates, Dagster observes (see README)
    sql_url_from_env: bool = False  # then the URL may hold a password: resources refer to the variable
    allowed_lateness_minutes: int = 5
    retraining_cron: str = "30 0 * * *"
    training_hours: int = 24
    rescoring_hours: int = 6
    silent_after_hours: int = 2
    scoring_deadline_minutes: int = 30
    dagster_home_override: Path | None = None  # DAGSTER_HOME, when set: the CLI, daemon and UI share it

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
            aggregation=env.get("BSCORE_AGGREGATION", "local"),
            allowed_lateness_minutes=int(env.get("BSCORE_ALLOWED_LATENESS_MINUTES", "5")),
            retraining_cron=env.get("BSCORE_RETRAINING_CRON", "30 0 * * *"),
            training_hours=int(env.get("BSCORE_TRAINING_HOURS", "24")),
            rescoring_hours=int(env.get("BSCORE_RESCORING_HOURS", "6")),
            silent_after_hours=int(env.get("BSCORE_SILENT_AFTER_HOURS", "2")),
            scoring_deadline_minutes=int(env.get("BSCORE_SCORING_DEADLINE_MINUTES", "30")),
            dagster_home_override=Path(env["DAGSTER_HOME"]).resolve() if env.get("DAGSTER_HOME") else None,
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
    training_hours: int = 24
    challenger_tolerance: float = 0.005  # a new model may flag at most this much more of the hold-out
    late_policy: str = "reopen"  # or "deadletter": readings for an already aggregated hour
