"""``bscore ingest``: check every file in a streaming pass, then publish them, chunk by chunk.

Nothing is published unless every file passes: a refused event (one the drain would
dead-letter later, or one before ``BSCORE_START``, which no partition would ever hold) is
reported with its file and line, and the command lands nothing. Names that ids cannot hold
are mapped by :func:`scoring.input_files.name_to_id`; the mapping is printed and kept in
``$BSCORE_HOME/id_mapping.csv`` (``name,id``), so the export's ids can be read back; a name
a spreadsheet would run as a formula is kept with a leading ``'`` (``scoring.spreadsheet_cells``).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from resources.events import EventSource
from scoring.input_files import FileLayout, IdMapping, InputError, check_chunk, inspect_file, iter_event_chunks
from scoring.spreadsheet_cells import neutralize_cell, restore_cell

MAX_REPORTED = 20


@dataclass
class FileCheck:
    """One file's layout, its event count, and the first refusals."""

    path: Path
    layout: FileLayout
    events: int = 0
    refused: int = 0
    errors: list = field(default_factory=list)
    first_ts: pd.Timestamp | None = None


def mapping_path(home: Path) -> Path:
    return home / "id_mapping.csv"


def load_mapping(home: Path) -> dict[str, str]:
    path = mapping_path(home)
    if not path.exists():
        return {}
    with open(path, newline="", encoding="utf-8") as handle:
        return {restore_cell(row["name"]): row["id"] for row in csv.DictReader(handle)}


def save_mapping(home: Path, new: dict[str, str]) -> None:
    """Append this command's mappings to the kept table."""
    if not new:
        return
    path = mapping_path(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    fresh = not path.exists()
    with open(path, "a", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        if fresh:
            writer.writerow(["name", "id"])
        writer.writerows((neutralize_cell(name), id_) for name, id_ in sorted(new.items()))


def _hint(error: InputError) -> InputError:
    if error.message.startswith("bad value") and "," in error.message:
        return InputError(error.path, error.line, f"{error.message} (a decimal comma? add --decimal-comma)")
    return error


def check_files(paths, ids: IdMapping, start: pd.Timestamp, device=None, decimal_comma=False,
                now=None, progress=True) -> list[FileCheck]:
    """Read every file once, in bounded memory; count its events and what would be refused.

    Raises
    ------
    InputError
        For a file that cannot be read at all (header, delimiter, encoding, a line too long,
        a CSV row with too many fields): there is no point in reading further.
    """
    checks = []
    for path in map(Path, paths):
        check = FileCheck(path, inspect_file(path, device))
        with tqdm(total=path.stat().st_size, unit="B", unit_scale=True, desc=f"checking {path.name}",
                  disable=not progress) as bar:
            for chunk in iter_event_chunks(path, check.layout, ids, decimal_comma):
                bar.update(chunk.nbytes)
                check.events += len(chunk.bodies)
                errors, first = check_chunk(chunk, path, now)
                check.refused += len(errors)
                room = MAX_REPORTED - len(check.errors)
                check.errors.extend(_hint(e) for e in errors[: max(room, 0)])
                if first is not None and (check.first_ts is None or first < check.first_ts):
                    check.first_ts = first
        if check.first_ts is not None and check.first_ts < start:
            check.refused += 1
            check.errors.append(InputError(path, None, (
                f"readings from {check.first_ts:%Y-%m-%dT%H:%M:%S} on are before BSCORE_START="
                f"{start:%Y-%m-%dT%H:%M}, so no partition would hold them: set BSCORE_START="
                f"{check.first_ts.floor('h'):%Y-%m-%dT%H:%M} (or earlier) for every bscore command")))
        checks.append(check)
    return checks


def publish_files(checks: list[FileCheck], events: EventSource, ids: IdMapping, decimal_comma=False,
                  chunk_events: int = 50_000, progress=True) -> int:
    """Publish the checked files' events, a chunk at a time; returns how many."""
    total = 0
    for check in checks:
        with tqdm(total=check.events, unit="event", desc=check.path.name, disable=not progress) as bar:
            for chunk in iter_event_chunks(check.path, check.layout, ids, decimal_comma):
                for i in range(0, len(chunk.bodies), chunk_events):
                    sent = events.publish(chunk.bodies[i : i + chunk_events])
                    bar.update(sent)
                    total += sent
    return total
