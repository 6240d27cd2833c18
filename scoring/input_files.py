"""Reading files of readings as users have them, in bounded memory, refusing bad input by file and line.

Three layouts are accepted, recognized from the file's first line:

- JSON-lines: one event object per line (either field naming, as devices send them);
- long CSV: a header naming ``ts``, ``device``, ``sensor`` and ``value`` (or the reference's
  ``TS``, ``Device``, ``Tag``/``Sensor``, ``Value``), one reading per row;
- wide CSV: a ``ts`` column, optionally a ``device`` column, and one column per sensor; an
  empty cell is no reading. A :class:`ColumnChoice` picks the sensor columns (``--columns``,
  ``--exclude``) and names label columns (``--label-column``), which are not sensors: their
  nonzero cells mark anomalous readings (:func:`scoring.event_chunks.iter_marked_readings`).

The CSV delimiter (``,`` ``;`` tab ``|``) is sniffed. A file missing its ``device`` column
takes the device from the caller (``--device``). Here a file's layout is recognized;
:mod:`scoring.event_chunks` then reads its events a block of lines at a time.

Device and sensor names that ids cannot hold (``Flow Rate (l/min)``) are mapped to an id by
:func:`name_to_id`, a deterministic slug; :class:`IdMapping` records every mapping so the
caller can print and keep it, and refuses two names that would become one id.
"""

from __future__ import annotations

import csv
import hashlib
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from scoring.readings import FIELD_ALIASES, ID_PATTERN, MAX_EVENT_BYTES, READING_COLUMNS

DELIMITERS = ",;\t|"
MAX_HEADER_BYTES = 1 << 20
JSON_SUFFIXES = (".jsonl", ".json", ".ndjson")
# CSV headers are matched without regard to case, and a few more names for the time column
# are accepted than in events (exports name it in many ways).
CSV_HEADER_ALIASES = {
    **{name.lower(): field for name, field in FIELD_ALIASES.items()},
    "time": "ts", "datetime": "ts", "date_time": "ts",
}
# Readings accepted at ingest must still be inside the drain's 10-year limit when it runs.
INGEST_MAX_AGE = pd.Timedelta(days=3650) - pd.Timedelta(days=1)


class InputError(ValueError):
    """Bad input, naming the file and (when known) the line."""

    def __init__(self, path, line: int | None, message: str):
        self.path, self.line, self.message = str(path), line, message
        where = f"{self.path}, line {line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")


def name_to_id(name: str) -> str:
    """The id a device or sensor name is stored under: the name itself when it is a valid id.

    Otherwise a deterministic slug: accents dropped, every run of other characters becomes
    ``_``, leading and trailing punctuation removed; a slug longer than 64 characters (or an
    empty one) ends in 8 hex digits of the name's SHA-256 instead.

    Examples
    --------
    >>> name_to_id("Flow Rate (l/min)")
    'Flow_Rate_l_min'
    """
    name = str(name).strip()
    if ID_PATTERN.fullmatch(name):
        return name
    text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    text = re.sub(r"[^A-Za-z0-9._:-]+", "_", text).strip("._:-")
    if text and len(text) <= 64:
        return text
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{text[:55].rstrip('._:-')}-{digest}" if text else f"id-{digest}"


@dataclass
class IdMapping:
    """Names mapped to ids by :func:`name_to_id`, and the valid ids seen as they are.

    ``known`` holds mappings kept from earlier ingests; a name mapped to an id another name
    already has (in this command or earlier) is refused, so the mapping stays reversible.
    """

    known: dict[str, str] = field(default_factory=dict)
    new: dict[str, str] = field(default_factory=dict)
    plain: set = field(default_factory=set)

    def __post_init__(self):
        self._owner = {ident: name for name, ident in self.known.items()}

    def map_name(self, name: str, path, line) -> str:
        name = str(name).strip()
        if not name:
            return name  # refused as a missing id by the validation
        if ID_PATTERN.fullmatch(name):
            owner = self._owner.get(name)
            if owner is not None and owner != name:
                raise InputError(path, line, f"name {name!r} is also the id of {owner!r}; rename one of them")
            self.plain.add(name)
            return name
        mapped = self.known.get(name) or self.new.get(name)
        if mapped is not None:
            return mapped
        ident = name_to_id(name)
        owner = self._owner.get(ident) or (ident if ident in self.plain else None)
        if owner is not None:
            raise InputError(path, line, f"names {owner!r} and {name!r} would both be stored as id {ident!r}; "
                                         "rename one of them")
        self.new[name] = ident
        self._owner[ident] = name
        return ident

    def map_series(self, names: pd.Series, lines: pd.Series, path) -> pd.Series:
        """Map a column of names (each distinct name once)."""
        codes, uniques = pd.factorize(names, sort=False)
        first_line = pd.Series(lines.to_numpy()).groupby(codes).first()
        mapped = [self.map_name(name, path, int(first_line[i])) for i, name in enumerate(uniques)]
        return pd.Series(pd.array(mapped, dtype=object)[codes], index=names.index) if len(names) else names


@dataclass(frozen=True)
class FileLayout:
    """How a file's rows become events."""

    kind: str  # "jsonl", "long", "wide"
    delimiter: str | None = None
    columns: tuple = ()  # the header, stripped
    ts: int | None = None  # column positions
    device: int | None = None
    sensor: int | None = None
    value: int | None = None
    sensors: tuple = ()  # wide: positions of sensor columns
    fixed_device: str | None = None  # from --device
    labels: tuple = ()  # wide: positions of label columns

    @property
    def max_line_bytes(self) -> int:
        return MAX_EVENT_BYTES * max(1, len(self.sensors))

    def describe(self) -> str:
        if self.kind == "jsonl":
            return "JSON-lines"
        delim = {"\t": "tab"}.get(self.delimiter, repr(self.delimiter))
        device = f"device {self.fixed_device!r}" if self.fixed_device is not None else f"device column {self.columns[self.device]!r}"
        if self.kind == "long":
            return f"long CSV, delimiter {delim}, {device}"
        labels = f", label column(s) {[self.columns[i] for i in self.labels]}" if self.labels else ""
        return f"wide CSV, delimiter {delim}, {device}, {len(self.sensors)} sensor column(s){labels}"


@dataclass(frozen=True)
class ColumnChoice:
    """Which columns of a wide CSV are sensors and which are labels (names as in the header).

    ``columns`` keeps only those sensor columns (None: all), ``exclude`` drops these, and
    ``labels`` are label columns: never ingested as sensors.
    """

    columns: tuple | None = None
    exclude: tuple = ()
    labels: tuple = ()

    @property
    def chosen(self) -> bool:
        return self.columns is not None or bool(self.exclude) or bool(self.labels)

    def apply(self, stripped: tuple, candidates: tuple, header_error) -> tuple[tuple, tuple]:
        """``(sensor positions, label positions)`` among the candidate columns; a name that is
        not one of them is an error naming it."""
        names = {stripped[i]: i for i in candidates}
        for option, wanted in (("--columns", self.columns or ()), ("--exclude", self.exclude),
                               ("--label-column", self.labels)):
            missing = [name for name in wanted if name not in names]
            if missing:
                raise header_error(f"has no column {', '.join(map(repr, missing))} (named by {option}); "
                                   f"its sensor columns are {[stripped[i] for i in candidates]}")
        labels = tuple(names[name] for name in self.labels)
        keep = set(names[name] for name in self.columns) if self.columns is not None else set(candidates)
        keep -= {names[name] for name in self.exclude} | set(labels)
        return tuple(i for i in candidates if i in keep), labels


def _first_line(path: Path) -> bytes:
    with open(path, "rb") as handle:
        head = handle.read(MAX_HEADER_BYTES + 1)
    if b"\0" in head:
        raise InputError(path, head[: head.index(b"\0")].count(b"\n") + 1,
                         "not a text file (NUL byte); give CSV or JSON-lines readings")
    line = head.split(b"\n", 1)[0]
    if len(line) > MAX_HEADER_BYTES:
        raise InputError(path, 1, f"first line is longer than {MAX_HEADER_BYTES} bytes; not a CSV header or an event")
    return line


def _decode(raw: bytes, path, line: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(path, line, "not UTF-8 text; re-save the file as UTF-8") from None


def _sniff_delimiter(header: str, path) -> str:
    try:
        return csv.Sniffer().sniff(header, delimiters=DELIMITERS).delimiter
    except csv.Error:
        counts = {d: header.count(d) for d in DELIMITERS}
        best = max(counts, key=counts.get)
        if counts[best]:
            return best
    raise InputError(path, 1, f"CSV header {header[:200]!r} has no delimiter (one of , ; tab |): it must name "
                              "ts/TS, device/Device, sensor/Sensor/Tag and value/Value, or ts and one column per sensor")


def inspect_file(path, device: str | None = None, choice: ColumnChoice | None = None) -> FileLayout:
    """Recognize a file's layout from its first line; refuse a header that cannot be read right.

    Parameters
    ----------
    path : path-like
        A CSV (long or wide) or JSON-lines file.
    device : str, optional
        The device of every row, for a CSV without a device column.
    choice : ColumnChoice, optional
        A wide CSV's sensor and label columns; refused for other layouts.

    Raises
    ------
    InputError
        Naming the file, the line and what is wrong: two columns that are aliases of one field
        (``Tag`` and ``Sensor``), no ``ts`` column, a long header with unknown columns, no
        device column and no ``device``, a chosen column the header does not have.
    """
    path = Path(path)
    choice = choice or ColumnChoice()
    first = _decode(_first_line(path), path, 1).lstrip("\ufeff").rstrip("\r")
    if path.suffix.lower() in JSON_SUFFIXES or first.lstrip().startswith("{"):
        if device is not None:
            raise InputError(path, None, "--device applies to CSV files only; JSON-lines events name their device")
        if choice.chosen:
            raise InputError(path, None, "--columns, --exclude and --label-column apply to wide CSV files only")
        return FileLayout("jsonl")
    delimiter = _sniff_delimiter(first, path)
    columns = tuple(next(csv.reader([first], delimiter=delimiter)))
    stripped = tuple(column.strip() for column in columns)

    def header_error(problem: str) -> InputError:
        return InputError(path, 1, f"CSV header {list(stripped)} {problem}")

    positions: dict[str, list[int]] = {}
    for i, column in enumerate(stripped):
        name = CSV_HEADER_ALIASES.get(column.lower())
        if name is not None:
            positions.setdefault(name, []).append(i)
    for name, found in positions.items():
        if len(found) > 1:
            raise header_error(f"names the field {name!r} {len(found)} times (columns "
                               f"{[stripped[i] for i in found]} are aliases of one field): keep one of them")
    if "ts" not in positions:
        raise header_error("must name ts/TS, device/Device, sensor/Sensor/Tag and value/Value (a long file), "
                           "or ts/TS and one column per sensor (a wide file); missing ts")
    if device is not None:
        if "device" in positions:
            raise header_error("has a device column: leave out --device")
        device = str(device)
    elif "device" not in positions:
        raise header_error("has no device column: add one (device/Device) or give the device with --device D")
    pick = {name: found[0] for name, found in positions.items()}
    if "sensor" in pick or "value" in pick:
        unknown = [c for c in stripped if c.lower() not in CSV_HEADER_ALIASES]
        missing = [n for n in READING_COLUMNS if n not in pick and not (n == "device" and device is not None)]
        if unknown or missing:
            raise header_error("must name ts/TS, device/Device, sensor/Sensor/Tag and value/Value"
                               + (f"; unknown {unknown}" if unknown else "") + (f"; missing {missing}" if missing else ""))
        if choice.chosen:
            raise header_error("is a long CSV (one reading per row): --columns, --exclude and --label-column "
                               "apply to wide CSV files only")
        return FileLayout("long", delimiter, stripped, pick["ts"], pick.get("device"), pick["sensor"], pick["value"],
                          fixed_device=device)
    sensors = tuple(i for i in range(len(stripped)) if i not in pick.values())
    if any(not stripped[i] for i in sensors):
        raise header_error("has a column without a name")
    sensors, labels = choice.apply(stripped, sensors, header_error)
    if not sensors:
        raise header_error("names no sensor column" + (" left after --columns, --exclude and --label-column"
                                                       if choice.chosen else ""))
    return FileLayout("wide", delimiter, stripped, pick["ts"], pick.get("device"), sensors=sensors, fixed_device=device,
                      labels=labels)
