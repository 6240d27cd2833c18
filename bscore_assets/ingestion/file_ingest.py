"""``bscore ingest``: read every file once, checking its events and staging them, then land them.

Each block of a file is checked as the drain will check it and its events to land are staged
(:mod:`bscore_assets.ingestion.staging`); once every file has passed, the staged files land
(moved into the landing folder), so a file is read and parsed once.

Strict (the default): nothing is published unless every file passes; a refused event (one the
drain would dead-letter later, or one before ``BSCORE_START``, which no partition would ever
hold) is reported with its file and line, every one of them in a report file
(``$BSCORE_HOME/refused/<time>.csv``: ``file,line,reason``), and the command lands nothing.
Tolerant (``--max-bad N``): a file with at most N refused events lands its good ones, and its
refused ones go to the dead-letter store (``deadletter/``: ``body, reason, file, line``) to be
listed, exported or replayed like the drain's; a file with more refuses the command as above. Names that ids cannot hold
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

from bscore_assets.ingestion.staging import Staging
from bscore_assets.storage import content_digest
from resources.blob import BlobStore
from resources.events import EventSource
from scoring.blob_layout import deadletter_key
from scoring.evaluation import LABEL_COLUMNS, labels_from_flags, write_labels
from scoring.event_chunks import check_chunk, iter_event_chunks, iter_marked_readings
from scoring.input_files import ColumnChoice, FileLayout, IdMapping, InputError, inspect_file
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
    dead_lettered: int = 0
    staged: list = field(default_factory=list)  # files of its checked events to land
    refused_staged: list = field(default_factory=list)  # Parquet files of its refused events


class RefusalReport:
    """Every refused event of a command, one CSV row each (``file,line,reason``), written as
    found so that memory does not grow with their number; the file exists once one is added."""

    def __init__(self, path: Path):
        self.path, self.rows, self._handle, self._writer = Path(path), 0, None, None

    def add(self, path, refused: list[tuple[int | None, str]]) -> None:
        """Add ``(line, reason)`` rows of one file."""
        if not refused:
            return
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = open(self.path, "w", newline="", encoding="utf-8")
            self._writer = csv.writer(self._handle)
            self._writer.writerow(["file", "line", "reason"])
        self._writer.writerows((str(path), "" if line is None else line, reason) for line, reason in refused)
        self.rows += len(refused)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()


def refusal_report_path(home: Path) -> Path:
    return Path(home) / "refused" / f"{pd.Timestamp.now('UTC'):%Y%m%dT%H%M%S%f}.csv"

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
                now=None, progress=True, choice: ColumnChoice | None = None,
                report: RefusalReport | None = None, staging: Staging | None = None) -> list[FileCheck]:
    """Read every file once, in bounded memory; count its events and what would be refused
    (every refusal added to ``report``, the first ones kept in the checks). With ``staging``,
    the events to land and the refused ones are kept there, for :func:`land_files`.

    Raises
    ------
    InputError
        For a file that cannot be read at all (header, delimiter, encoding, a line too long,
        a CSV row with too many fields): there is no point in reading further.
    """
    checks = []
    for path in map(Path, paths):
        check = FileCheck(path, inspect_file(path, device, choice))
        staged_before = len(staging.event_files) if staging is not None else 0
        with tqdm(total=path.stat().st_size, unit="B", unit_scale=True, desc=f"checking {path.name}",
                  disable=not progress) as bar:
            for chunk in iter_event_chunks(path, check.layout, ids, decimal_comma, now):
                bar.update(chunk.nbytes)
                check.events += chunk.events
                verdict = check_chunk(chunk, now)
                _note_refused(check, verdict.refused, report, staging)
                if staging is not None:
                    staging.add_events(verdict.landable)
                first = verdict.earliest
                if first is not None and (check.first_ts is None or first < check.first_ts):
                    check.first_ts = first
        if staging is not None:
            staging.cut()
            check.staged = staging.event_files[staged_before:]
        if check.first_ts is not None and check.first_ts < start:
            check.refused += 1
            check.errors.append(InputError(path, None, (
                f"readings from {check.first_ts:%Y-%m-%dT%H:%M:%S} on are before BSCORE_START="
                f"{start:%Y-%m-%dT%H:%M}, so no partition would hold them: set BSCORE_START="
                f"{check.first_ts.floor('h'):%Y-%m-%dT%H:%M} (or earlier) for every bscore command")))
            if report is not None:
                report.add(path, [(None, check.errors[-1].message)])
        checks.append(check)
    return checks


def _note_refused(check: FileCheck, refused: list[tuple[int, str, str]], report: RefusalReport | None,
                  staging: Staging | None) -> None:
    if not refused:
        return
    check.refused += len(refused)
    room = MAX_REPORTED - len(check.errors)
    check.errors.extend(_hint(InputError(check.path, line, reason)) for line, _, reason in refused[: max(room, 0)])
    if report is not None:
        report.add(check.path, [(line, reason) for line, _, reason in refused])
    if staging is not None:
        lines, bodies, reasons = zip(*refused)
        frame = pd.DataFrame({"body": bodies, "reason": reasons, "file": str(check.path), "line": lines})
        check.refused_staged.append(staging.add_refused(frame))


def refuses(check: FileCheck, max_bad: int | None) -> bool:
    """Whether the file's refused events refuse the command: any in strict mode (``max_bad``
    None), more than ``max_bad`` otherwise, and always readings before ``BSCORE_START`` (a
    setting to change, not lines to drop)."""
    if max_bad is None:
        return check.refused > 0
    return check.refused > max_bad or any(error.line is None for error in check.errors)


class LandingError(ValueError):
    """Landing failed (a full disk, say); what was landed has been withdrawn."""


def land_files(checks: list[FileCheck], events: EventSource, dead_letters: BlobStore | None = None) -> int:
    """Land the checked files' staged events; returns how many. With ``dead_letters``
    (tolerant mode), their refused events go there, with file and line.

    All or nothing for the command's files: if writing fails (a full disk), what this call
    landed is withdrawn and :class:`LandingError` says where and what to do.
    """
    try:
        for check in checks:
            if dead_letters is not None:
                for staged in check.refused_staged:
                    frame = pd.read_parquet(staged)
                    dead_letters.write_parquet(deadletter_key(content_digest(frame)), frame)
                    check.dead_lettered += len(frame)
            events.land_files(check.staged)
    except OSError as exc:
        raise landing_error(exc, events) from exc
    return sum(check.events - check.refused for check in checks)


def landing_error(exc: OSError, events: EventSource) -> LandingError:
    """What to say when writing failed (a full disk); what was landed is withdrawn first."""
    withdrawn = events.withdraw_published()
    where = exc.filename or events.describe()
    return LandingError(f"cannot write {where}: {exc.strerror or exc}; nothing was landed ({withdrawn} file(s) "
                        f"landed before were withdrawn). Free space there (or set BSCORE_HOME to a disk with "
                        f"room) and run the command again")


def save_file_labels(checks: list[FileCheck], ids: IdMapping, labels_dir: Path, window_seconds: int) -> list[tuple[Path, int]]:
    """For each wide CSV with label columns, its marked readings as label spans in
    ``labels_dir/<file name>.csv`` (replacing an earlier one of that name); returns
    ``(labels file, spans)`` per file."""
    saved = []
    for check in checks:
        if not check.layout.labels:
            continue
        marked = list(iter_marked_readings(check.path, check.layout, ids))
        spans = [labels_from_flags(group["ts"], group["device"], window_seconds, kind=str(kind))
                 for kind, group in pd.concat(marked).groupby("kind", sort=True)] if marked else []
        labels = pd.concat(spans, ignore_index=True) if spans else pd.DataFrame(columns=LABEL_COLUMNS)
        saved.append((write_labels(labels, labels_dir / f"{check.path.name}.csv"), len(labels)))
    return saved
