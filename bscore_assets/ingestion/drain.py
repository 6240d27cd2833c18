"""Drain the event source into hourly raw Parquet parts, keeping every accepted event once.

Runs only inside a ``raw_readings`` run, so what it stores and dead-letters reaches that run's
metadata and checks. Each received batch is parsed; its good readings are written per hour as
one part named after its content, its bad events to the dead-letter store with their reasons,
and only then is the batch committed. A crash before the commit re-delivers the batch (with the
same or other batch boundaries): the same readings get the same part name, and readers of raw
storage keep each (device, sensor, ts) once, so nothing is lost or counted twice.

Readings for an hour that ``raw_readings`` has already recorded are *late*. By the late policy
they either re-open that hour (stored as usual; ``late_readings_sensor`` sees the hour's raw
content change and requests it again, so it is re-aggregated and re-scored) or go to the
dead-letter store.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from bscore_assets.storage import content_digest, deadletter_key, part_span, raw_part_key
from resources.blob import BlobStore
from resources.events import EventSource
from scoring.fleet import undeclared_sensor_mask
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
    reason = f"late: hour {hour:%Y-%m-%dT%H} was already recorded"
    return pd.DataFrame({"body": readings_to_event_bodies(rows), "reason": reason})


def _parse(batch):
    payload = getattr(batch, "payload", None)
    if payload is not None:
        from scoring.event_lines import parse_event_lines

        return parse_event_lines(payload)
    return parse_event_bodies(batch.bodies)


def _undeclared_rows(rows: pd.DataFrame) -> pd.DataFrame:
    reason = "undeclared sensor: not in BSCORE_SENSORS"
    return pd.DataFrame({"body": readings_to_event_bodies(rows), "reason": reason})


def drain_events(events: EventSource, blob: BlobStore, recorded_hours=frozenset(), late_policy: str = "reopen",
                 max_batches: int | None = None, log=None, declared_sensors=()) -> DrainSummary:
    """Move every pending event into raw storage (or dead-letter), then commit it.

    Parameters
    ----------
    recorded_hours : set of Timestamp
        Hours ``raw_readings`` has already recorded; readings for them are late.
    late_policy : {"reopen", "deadletter"}
        What to do with late readings.
    max_batches : int, optional
        Stop after this many batches (the rest stays pending).
    declared_sensors : collection of str
        The sensor allow-list (``BSCORE_SENSORS``); readings of other sensors are dead-lettered.
        Empty: no allow-list.
    """
    if late_policy not in LATE_POLICIES:
        raise ValueError(f"late_policy={late_policy!r} must be one of {LATE_POLICIES}")
    recorded_hours = set(recorded_hours)
    summary = DrainSummary()
    while max_batches is None or summary.batches < max_batches:
        batch = events.receive()
        if batch is None:
            break
        parsed = _parse(batch)
        readings, rejected = parsed.readings, [parsed.rejected]
        undeclared = undeclared_sensor_mask(readings["sensor"], declared_sensors)
        if undeclared.any():
            rejected.append(_undeclared_rows(readings[undeclared]))
            readings = readings[~undeclared]
        stored = 0
        for hour, rows in readings.groupby(hour_of_window(readings["ts"]), sort=True):
            if hour in recorded_hours:
                summary.late += len(rows)
                if late_policy == "deadletter":
                    rejected.append(_late_rows(rows, hour))
                    continue
                summary.reopened_hours.add(hour)
            rows = rows.reset_index(drop=True)
            span = part_span(rows["ts"].to_numpy(dtype="datetime64[ns]").view("int64"), hour)
            blob.write_parquet(raw_part_key(hour, content_digest(rows), len(rows), span), rows)
            summary.readings_per_hour[hour] = summary.readings_per_hour.get(hour, 0) + len(rows)
            stored += len(rows)
        rejected = pd.concat(rejected, ignore_index=True)
        if len(rejected):
            blob.write_parquet(deadletter_key(content_digest(rejected)), rejected)
            for category, count in rejected["reason"].str.split(":").str[0].value_counts().items():
                summary.reasons[category] = summary.reasons.get(category, 0) + int(count)
        events.commit(batch)
        summary.batches += 1
        summary.accepted += stored
        summary.rejected += len(rejected)
        if log is not None:
            log.info(f"batch {batch.label}: {stored} readings stored, {len(rejected)} dead-lettered")
    return summary
