"""Drain the event source into hourly raw Parquet parts, keeping every accepted event once.

Each received batch is parsed; its good readings are written per hour as one part named
after the batch, its bad events to the dead-letter store with their reasons, and only then
is the batch committed. A crash before the commit re-delivers the batch, which rewrites
the same parts, and readers drop repeated readings, so nothing is lost or counted twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from bscore_assets.storage import deadletter_key, raw_part_key
from resources.blob import BlobStore
from resources.events import EventSource
from scoring.readings import parse_event_bodies
from scoring.windows import hour_of_window


@dataclass
class DrainSummary:
    batches: int = 0
    accepted: int = 0
    rejected: int = 0
    readings_per_hour: dict = field(default_factory=dict)
    reasons: dict = field(default_factory=dict)

    @property
    def hours(self) -> list[pd.Timestamp]:
        return sorted(self.readings_per_hour)


def drain_events(events: EventSource, blob: BlobStore, max_batches: int | None = None, log=None) -> DrainSummary:
    """Move every pending event into raw storage (or dead-letter), then commit it."""
    summary = DrainSummary()
    while max_batches is None or summary.batches < max_batches:
        batch = events.receive()
        if batch is None:
            break
        parsed = parse_event_bodies(batch.bodies)
        readings = parsed.readings
        for hour, rows in readings.groupby(hour_of_window(readings["ts"])):
            blob.write_parquet(raw_part_key(hour, batch.label), rows.reset_index(drop=True))
            summary.readings_per_hour[hour] = summary.readings_per_hour.get(hour, 0) + len(rows)
        if len(parsed.rejected):
            blob.write_parquet(deadletter_key(batch.label), parsed.rejected)
            for reason in parsed.rejected["reason"].str.split(":").str[0]:
                summary.reasons[reason] = summary.reasons.get(reason, 0) + 1
        events.commit(batch)
        summary.batches += 1
        summary.accepted += len(readings)
        summary.rejected += len(parsed.rejected)
        if log is not None:
            log.info(f"batch {batch.label}: {len(readings)} readings stored, {len(parsed.rejected)} dead-lettered")
    return summary
