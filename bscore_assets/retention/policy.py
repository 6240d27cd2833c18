"""The retention policy: how many days each kind of data is kept, and the cutoffs it gives."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from bscore_assets.settings import RETENTION_DAYS, Settings

# What each kind is, for people (the CLI's and the job's listing).
KINDS = {
    "landing": "landing files the drain has read whole",
    "raw": "raw reading parts and Stream Analytics' census (blob raw/, asa-census/)",
    "deadletter": "dead letters and their replay and export records",
    "model": "superseded and rejected model versions",
    "prediction": "prediction parts and verdict files (blob predictions/, verdicts/)",
    "orphan": "prediction parts no manifest names, unfinished model versions",
    "sql": "SQL windows, predictions and device verdicts",
    "run": "finished Dagster runs and their event logs",
}
# Kinds whose removal retires hours: a later run of such an hour is refused.
HOURLY_KINDS = ("raw", "prediction", "sql")


@dataclass(frozen=True)
class RetentionPolicy:
    """Days kept per kind (the settings' ``retain_<kind>_days``)."""

    days: dict

    @classmethod
    def from_settings(cls, settings: Settings) -> "RetentionPolicy":
        return cls({kind: getattr(settings, f"retain_{kind}_days") for kind in RETENTION_DAYS})

    def cutoff(self, kind: str, now: pd.Timestamp) -> pd.Timestamp:
        """The start of the first hour kept: data of hours before it goes (an hour goes whole)."""
        return (pd.Timestamp(now) - pd.Timedelta(days=self.days[kind])).floor("h")

    def older(self, kind: str, seen: pd.Timestamp, now: pd.Timestamp) -> bool:
        """Whether something first seen (or made) at ``seen`` is past the kind's days."""
        return pd.Timestamp(seen) <= pd.Timestamp(now) - pd.Timedelta(days=self.days[kind])
