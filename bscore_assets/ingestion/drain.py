"""Drain the event source into hourly raw Parquet parts, keeping every accepted event once.

Runs only inside a ``raw_readings`` run, so what it stores and dead-letters reaches that run's
metadata and checks. Each received batch is parsed; its good readings are written per hour as
one part named after its content and the order it was accepted in, its bad events to the
dead-letter store with their reasons, and only then is the batch committed. A crash before the
commit re-delivers the batch (with the same or other batch boundaries): a part whose content the
hour already holds is not stored again (counted as re-delivered), and readers of raw storage keep
each (device, sensor, ts) once, so nothing is lost or counted twice.

A reading re-sent with another value: the first accepted value wins. Readers follow the parts'
acceptance order (``bscore_assets.storage.raw_parts``), not their content hashes, and within a
part its rows' order; later values are ignored and counted as conflicts by the aggregation.

Readings for an hour that ``raw_readings`` has already recorded are *late*. By the late policy
they either re-open that hour (stored as usual; ``late_readings_sensor`` sees the hour's raw
content change and requests it again, so it is re-aggregated and re-scored) or go to the
dead-letter store.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from bscore_assets.storage import acceptance_sequence, arrow_digest, content_digest, part_span, raw_parts
from resources.blob import BlobStore
from resources.events import EventSource
from scoring.blob_layout import deadletter_key, part_digest, raw_part_key
from scoring.event_lines import READINGS_SCHEMA, parse_event_lines_table
from scoring.fleet import undeclared_sensor_mask
from scoring.parquet import table_to_parquet_bytes
from scoring.readings import parse_event_bodies, readings_to_event_bodies
from scoring.windows import window_ends_ns

LATE_POLICIES = ("reopen", "deadletter")
_HOUR_NS = 3_600_000_000_000


@dataclass
class DrainSummary:
    batches: int = 0
    accepted: int = 0
    rejected: int = 0
    late: int = 0
    redelivered: int = 0  # readings of parts the hour already held, not stored again
    readings_per_hour: dict = field(default_factory=dict)
    reasons: dict = field(default_factory=dict)
    reopened_hours: set = field(default_factory=set)

    @property
    def hours(self) -> list[pd.Timestamp]:
        return sorted(self.readings_per_hour)


def _late_rows(rows: pa.Table, hour: pd.Timestamp) -> pd.DataFrame:
    reason = f"late: hour {hour:%Y-%m-%dT%H} was already recorded"
    return pd.DataFrame({"body": readings_to_event_bodies(rows.to_pandas()), "reason": reason})


def _parse(batch) -> tuple[pa.Table, pd.DataFrame]:
    """A batch's accepted readings as Arrow columns, and its rejected events with their reasons."""
    payload = getattr(batch, "payload", None)
    if payload is not None:
        return parse_event_lines_table(payload)
    parsed = parse_event_bodies(batch.bodies)
    readings = pa.Table.from_pandas(parsed.readings[READINGS_SCHEMA.names], schema=READINGS_SCHEMA,
                                    preserve_index=False)
    return readings.replace_schema_metadata(None), parsed.rejected


def _undeclared_rows(rows: pa.Table) -> pd.DataFrame:
    reason = "undeclared sensor: not in BSCORE_SENSORS"
    return pd.DataFrame({"body": readings_to_event_bodies(rows.to_pandas()), "reason": reason})


def _split_undeclared(readings: pa.Table, declared_sensors) -> tuple[pa.Table, pa.Table | None]:
    """The readings of declared sensors, and those of others (None when there are none)."""
    undeclared = undeclared_sensor_mask(readings["sensor"], declared_sensors)
    if not undeclared.any():
        return readings, None
    return readings.filter(pa.array(~undeclared)), readings.filter(pa.array(undeclared))


def _by_hour(readings: pa.Table):
    """``(hour, rows, times)`` per hour partition, hours in order, rows in their order: the hour
    of a reading as :func:`scoring.windows.hour_of_window` gives it, times in nanoseconds."""
    ns = pc.cast(readings["ts"], pa.int64()).to_numpy()
    hours = window_ends_ns(ns, 3600) - _HOUR_NS
    distinct = np.unique(hours)
    if len(distinct) == 1:  # a batch of a time-ordered landing mostly lies in one hour
        yield pd.Timestamp(int(distinct[0])), readings, ns
        return
    for hour in distinct:
        mask = hours == hour
        yield pd.Timestamp(int(hour)), readings.filter(pa.array(mask)), ns[mask]


class _PartWriter:
    """Writes an hour's rows of a batch as one part named by its acceptance sequence, content and
    time span, unless the hour holds a part of that content already (a re-delivery)."""

    def __init__(self, blob: BlobStore):
        self.blob, self.sequence, self.digests = blob, 0, {}

    def store(self, hour: pd.Timestamp, rows: pa.Table, ns: np.ndarray) -> bool:
        """Store the part; False when it was a re-delivery."""
        if hour not in self.digests:
            self.digests[hour] = {part_digest(key) for key in raw_parts(self.blob, hour)}
        digest = arrow_digest(rows)
        if digest in self.digests[hour]:
            return False
        self.sequence = acceptance_sequence(self.sequence)
        key = raw_part_key(hour, digest, rows.num_rows, part_span(ns, hour), accepted=self.sequence)
        # Values seldom repeat: a dictionary for them would be built only to be dropped.
        self.blob.write_bytes(key, table_to_parquet_bytes(rows, use_dictionary=["ts", "device", "sensor"]))
        self.digests[hour].add(digest)
        return True


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
    parts = _PartWriter(blob)
    while max_batches is None or summary.batches < max_batches:
        batch = events.receive()
        if batch is None:
            break
        readings, parsed_rejected = _parse(batch)
        rejected = [parsed_rejected]
        readings, undeclared = _split_undeclared(readings, declared_sensors)
        if undeclared is not None:
            rejected.append(_undeclared_rows(undeclared))
        stored = 0
        for hour, rows, ns in _by_hour(readings):
            if hour in recorded_hours:
                summary.late += rows.num_rows
                if late_policy == "deadletter":
                    rejected.append(_late_rows(rows, hour))
                    continue
                summary.reopened_hours.add(hour)
            if not parts.store(hour, rows, ns):
                summary.redelivered += rows.num_rows
                continue
            summary.readings_per_hour[hour] = summary.readings_per_hour.get(hour, 0) + rows.num_rows
            stored += rows.num_rows
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
