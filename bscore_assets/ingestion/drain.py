"""Drain the event source into hourly raw Parquet parts, keeping every accepted event once.

Each received batch is parsed; its good readings are written per hour as one part named
after the batch, its bad events to the dead-letter store with their reasons, and only then
is the batch committed. A crash before the commit re-delivers the batch (with the same or
other batch boundaries), and readers of raw storage keep each (device, sensor, ts) once, so
nothing is lost or counted twice.

Readings for an hour whose aggregates are already stored are *late*. By the late policy
they either re-open that hour (stored as usual, and the hour's aggregated marker removed so
that it is aggregated and scored again) or go to the dead-letter store.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from bscore_assets.storage import aggregated_marker_key, deadletter_key, raw_part_key
from resources.blob import BlobStore
from resources.events import EventSource
from scoring.readings import parse_event_bodies, readings_to_event_bodies
from scoring.windows import hour_of_window


LATE_POLICIES = ("reopen", "deadletter")


@dataclass
class DrainSummary:
    batches: int = 0
    accepted: int = 0
    rejected: int = 0
    late: int = 0
    readings_per_hour: dict = field(default_factory=dict)
    reasons: dict = field(default_factory=dict)
    reopened_hours: set = field(default_factory=set)

    @property
    def hours(self) -> list[pd.Timestamp]:
        return sorted(self.readings_per_hour)


def _late_rows(rows: pd.DataFrame, hour: pd.Timestamp) -> pd.DataFrame:
    reason = f"late: hour {hour:%Y-%m-%dT%H} was already aggregated"
    return pd.DataFrame({"body": readings_to_event_bodies(rows), "reason": reason})


def drain_events(
    events: EventSource, blob: BlobStore, late_policy: str = "reopen", max_batches: int | None = None, log=None
) -> DrainSummary:
    """Move every pending event into raw storage (or dead-letter), then commit it.

    Parameters
    ----------
    late_policy : {"reopen", "deadletter"}
        What to do with readings for an hour that is already aggregated.
    max_batches : int, optional
        Stop after this many batches (the rest stays pending).
    """
    if late_policy not in LATE_POLICIES:
        raise ValueError(f"late_policy={late_policy!r} must be one of {LATE_POLICIES}")
    summary = DrainSummary()
    while max_batches is None or summary.batches < max_batches:
        batch = events.receive()
        if batch is None:
            break
        parsed = parse_event_bodies(batch.bodies)
        readings, rejected = parsed.readings, [parsed.rejected]
        stored = 0
        for hour, rows in readings.groupby(hour_of_window(readings["ts"])):
            marker = aggregated_marker_key(hour)
            if blob.exists(marker):
                summary.late += len(rows)
                if late_policy == "deadletter":
                    rejected.append(_late_rows(rows, hour))
                    continue
                summary.reopened_hours.add(hour)
            blob.write_parquet(raw_part_key(hour, batch.label), rows.reset_index(drop=True))
            if hour in summary.reopened_hours:
                blob.delete(marker)  # only after the late readings are stored
            summary.readings_per_hour[hour] = summary.readings_per_hour.get(hour, 0) + len(rows)
            stored += len(rows)
        rejected = pd.concat(rejected, ignore_index=True)
        if len(rejected):
            blob.write_parquet(deadletter_key(batch.label), rejected)
            for category, count in rejected["reason"].str.split(":").str[0].value_counts().items():
                summary.reasons[category] = summary.reasons.get(category, 0) + int(count)
        events.commit(batch)
        summary.batches += 1
        summary.accepted += stored
        summary.rejected += len(rejected)
        if log is not None:
            log.info(f"batch {batch.label}: {stored} readings stored, {len(rejected)} dead-lettered")
    return summary
