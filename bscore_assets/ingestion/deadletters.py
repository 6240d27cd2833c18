"""Dead letters: list them, and re-submit them once they can be accepted.

The drain stores the events it refuses as ``deadletter/<batch>.parquet`` (columns ``body,
reason``). A replay takes the selected ones out: it records them under
``deadletter-replayed/<batch>/<digest>.parquet``, publishes those that are now accepted to
the event source, and only then rewrites the batch's dead-letter blob without them. A crash
in between re-publishes at the next replay (raw readings keep each reading once), never
loses one; a dead letter that was replayed is gone from ``deadletter/``, so it is neither
sent nor counted again. Those still refused stay where they are.

An export writes the selected bodies to a JSON-lines file to be fixed by hand and ingested
with ``bscore ingest``; it takes them out in the same way (``deadletter-exported/``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from resources.blob import BlobStore
from resources.events import EventSource
from scoring.blob_layout import DEADLETTER_EXPORTED_PREFIX, DEADLETTER_PREFIX, DEADLETTER_REPLAYED_PREFIX
from scoring.event_chunks import map_event_ids
from scoring.input_files import INGEST_MAX_AGE, IdMapping
from scoring.readings import parse_event_bodies

PREFIX = DEADLETTER_PREFIX
REPLAYED = DEADLETTER_REPLAYED_PREFIX
EXPORTED = DEADLETTER_EXPORTED_PREFIX


def reason_category(reasons: pd.Series) -> pd.Series:
    """``bad sensor`` of ``bad sensor: 'a b' must be ...``, as the drain counts them."""
    return reasons.str.split(":").str[0]


def _batches(blob: BlobStore) -> list[str]:
    return [key for key in blob.list(PREFIX) if key.endswith(".parquet")]


def list_dead_letters(blob: BlobStore) -> pd.DataFrame:
    """Dead letters per blob and reason: ``key, reason, count`` (reason as its category)."""
    rows = []
    for key in _batches(blob):
        frame = blob.read_parquet(key)
        for reason, count in reason_category(frame["reason"]).value_counts(sort=False).items():
            rows.append((key, reason, int(count)))
    return pd.DataFrame(rows, columns=["key", "reason", "count"])


@dataclass
class ReplaySummary:
    selected: int = 0
    sent: int = 0
    still_refused: dict = field(default_factory=dict)  # reason category -> count
    mapped: dict = field(default_factory=dict)  # name -> id, with fix_ids


def _take_out(blob: BlobStore, key: str, frame: pd.DataFrame, taken: pd.Series, record_prefix: str) -> None:
    """Record the taken rows under ``record_prefix``; callers then act; ``_finish`` removes them."""
    rows = frame[taken]
    digest = hashlib.sha256("\n".join(rows["body"]).encode()).hexdigest()[:16]
    label = key[len(PREFIX):].removesuffix(".parquet")
    blob.write_parquet(f"{record_prefix}{label}/{digest}.parquet", rows.reset_index(drop=True))


def _finish(blob: BlobStore, key: str, frame: pd.DataFrame, taken: pd.Series) -> None:
    left = frame[~taken].reset_index(drop=True)
    if len(left):
        blob.write_parquet(key, left)
    else:
        blob.delete(key)


def replay_dead_letters(blob: BlobStore, events: EventSource, reason: str | None = None,
                        ids: IdMapping | None = None, now=None) -> ReplaySummary:
    """Publish the dead letters (of one reason category) that are accepted now.

    Parameters
    ----------
    reason : str, optional
        Only dead letters of this category (``bad sensor``, ``late``, ...); default all.
    ids : IdMapping, optional
        Map device and sensor names that ids cannot hold, as ``bscore ingest`` does.
    """
    summary = ReplaySummary()
    for key in _batches(blob):
        frame = blob.read_parquet(key)
        category = reason_category(frame["reason"])
        selected = category == reason if reason is not None else pd.Series(True, index=frame.index)
        if not selected.any():
            continue
        bodies = frame["body"]
        if ids is not None:
            bodies = pd.Series([map_event_ids(b, ids, key, None) if s else b for b, s in zip(frame["body"], selected)],
                               index=frame.index)
        checked = parse_event_bodies(bodies[selected].tolist(), now=now, max_age=INGEST_MAX_AGE)
        refused = set(checked.rejected["body"])
        accepted = selected & ~bodies.isin(refused)
        summary.selected += int(selected.sum())
        for cat, count in reason_category(checked.rejected["reason"]).value_counts().items():
            summary.still_refused[cat] = summary.still_refused.get(cat, 0) + int(count)
        if not accepted.any():
            continue
        _take_out(blob, key, frame.assign(body=bodies), accepted, REPLAYED)
        summary.sent += events.publish(bodies[accepted].tolist())
        _finish(blob, key, frame, accepted)
    if ids is not None:
        summary.mapped = dict(ids.new)
    return summary


def export_dead_letters(blob: BlobStore, out: Path, reason: str | None = None) -> int:
    """Write the dead letters' bodies to a JSON-lines file (one per line) and take them out."""
    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp")
    taken_keys = []
    with open(tmp, "w", encoding="utf-8") as handle:
        for key in _batches(blob):
            frame = blob.read_parquet(key)
            selected = (reason_category(frame["reason"]) == reason if reason is not None
                        else pd.Series(True, index=frame.index))
            if selected.any():
                for body in frame.loc[selected, "body"]:
                    handle.write(body.replace("\n", " ").replace("\r", " ") + "\n")
                taken_keys.append((key, frame, selected))
    tmp.replace(out)
    for key, frame, selected in taken_keys:  # the file is whole before anything is taken out
        _take_out(blob, key, frame, selected, EXPORTED)
        _finish(blob, key, frame, selected)
    return sum(int(selected.sum()) for _, _, selected in taken_keys)
