"""Reading files of readings as users have them, in bounded memory, refusing bad input by file and line.

Three layouts are accepted, recognized from the file's first line:

- JSON-lines: one event object per line (either field naming, as devices send them);
- long CSV: a header naming ``ts``, ``device``, ``sensor`` and ``value`` (or the reference's
  ``TS``, ``Device``, ``Tag``/``Sensor``, ``Value``), one reading per row;
- wide CSV: a ``ts`` column, optionally a ``device`` column, and one column per sensor; an
  empty cell is no reading. A :class:`ColumnChoice` picks the sensor columns (``--columns``,
  ``--exclude``) and names label columns (``--label-column``), which are not sensors: their
  nonzero cells mark anomalous readings (:func:`iter_marked_readings`).

The CSV delimiter (``,`` ``;`` tab ``|``) is sniffed. A file missing its ``device`` column
takes the device from the caller (``--device``). Files are read in blocks of lines, never
whole: a line longer than a file layout's limit, a NUL byte (not a text file) or bytes that
are not UTF-8 are refused with the file and line named.

Device and sensor names that ids cannot hold (``Flow Rate (l/min)``) are mapped to an id by
:func:`name_to_id`, a deterministic slug; :class:`IdMapping` records every mapping so the
caller can print and keep it, and refuses two names that would become one id.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from scoring.event_lines import GOOD_EVENT, _lines, parse_event_lines, parse_event_lines_table
from scoring.readings import FIELD_ALIASES, ID_PATTERN, MAX_EVENT_BYTES, READING_COLUMNS

DELIMITERS = ",;\t|"
BLOCK_BYTES = 1 << 20
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


@dataclass(frozen=True)
class EventChunk:
    """Event bodies read from a block of a file, newline-delimited, with the line each came from."""

    payload: bytes  # one body per line, each ending in "\n"; bodies hold no newline
    lines: list[int]
    nbytes: int = 0  # of the file, for progress

    @property
    def bodies(self) -> list[str]:
        return self.payload.decode("utf-8").split("\n")[:-1]

    @property
    def events(self) -> int:
        return len(self.lines)


def _payload(bodies: list[str]) -> bytes:
    return "".join(body + "\n" for body in bodies).encode("utf-8")


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


def _line_blocks(path: Path, max_line_bytes: int, block_bytes: int = BLOCK_BYTES) -> Iterator[tuple[int, list[bytes]]]:
    """``(first line number, lines)`` per block of whole lines, header included; memory bounded
    by ``block_bytes + max_line_bytes``."""
    line_no, rest = 1, b""
    with open(path, "rb") as handle:
        while True:
            data = handle.read(block_bytes)
            if b"\0" in data:
                buf = rest + data
                raise InputError(path, line_no + buf[: buf.index(b"\0")].count(b"\n"),
                                 "not a text file (NUL byte); give CSV or JSON-lines readings")
            buf = rest + data
            cut = buf.rfind(b"\n") if data else len(buf)
            if cut < 0:
                if len(buf) > max_line_bytes:
                    raise InputError(path, line_no, f"line is longer than {max_line_bytes} bytes")
                rest = buf
                continue
            lines = buf[:cut].split(b"\n") if buf[:cut] or data else []
            rest = buf[cut + 1 :] if data else b""
            for i, line in enumerate(lines):
                if len(line) > max_line_bytes:
                    raise InputError(path, line_no + i, f"line is longer than {max_line_bytes} bytes")
            if len(rest) > max_line_bytes:
                raise InputError(path, line_no + len(lines), f"line is longer than {max_line_bytes} bytes")
            if lines:
                yield line_no, lines
            line_no += len(lines)
            if not data:
                return


def _json_chunk(path, first: int, lines: list[bytes], ids: IdMapping) -> EventChunk:
    return _plain_json_chunk(path, first, lines, ids) or _mapped_json_chunk(path, first, lines, ids)


def _plain_json_chunk(path, first: int, lines: list[bytes], ids: IdMapping) -> EventChunk | None:
    """The block as it is, when every line is a plainly good event (``GOOD_EVENT``, which
    admits only ids that map to themselves) with nothing around its braces; else None."""
    data = b"\n".join(lines) + b"\n"
    events = _lines(data)
    plain = pc.and_(pc.match_substring_regex(events, GOOD_EVENT),
                    pc.and_(pc.starts_with(events, "{"), pc.ends_with(events, "}\n")))
    if not pc.all(plain).as_py():
        return None
    # Ids only: every time the columnar parser can hold is let through here (the check judges times).
    readings, _ = parse_event_lines_table(data, now=pd.Timestamp("2000-01-01"), max_age=pd.Timedelta(days=100_000),
                                          max_ahead=pd.Timedelta(days=90_000))
    for column in ("device", "sensor"):
        names, first_index = np.unique(readings[column].to_numpy(zero_copy_only=False), return_index=True)
        for name, index in zip(names, first_index):
            ids.map_name(name, path, first + int(index))  # refuses an id another name maps to
    return EventChunk(data, list(range(first, first + len(lines))))


def _mapped_json_chunk(path, first: int, lines: list[bytes], ids: IdMapping) -> EventChunk:
    bodies, numbers = [], []
    for i, raw in enumerate(lines):
        text = _decode(raw, path, first + i).strip()
        if first + i == 1:
            text = text.lstrip("\ufeff")
        if not text:
            continue
        bodies.append(map_event_ids(text, ids, path, first + i))
        numbers.append(first + i)
    return EventChunk(_payload(bodies), numbers)


def map_event_ids(text: str, ids: IdMapping, path, line: int) -> str:
    """The body with device and sensor names mapped to ids when they cannot be ids themselves."""
    try:
        event = json.loads(text)
    except (ValueError, RecursionError):
        return text  # refused with its reason by the validation
    if not isinstance(event, dict):
        return text
    changed = False
    for key, val in event.items():
        if FIELD_ALIASES.get(key) in ("device", "sensor") and isinstance(val, str) and val.strip():
            mapped = ids.map_name(val, path, line)
            if mapped != val:
                event[key], changed = mapped, True
    return json.dumps(event) if changed else text


_BLANK_LINE = re.compile(rb"(?:^|\n)[ \t\r\f\v]*(?:\n|$)")


def _csv_frame(path, layout: FileLayout, first: int, lines: list[bytes]) -> pd.DataFrame:
    """The block's rows (header and blank lines left out) as text columns ``0..n-1``, and
    ``_line``: each row's line number in the file."""
    data = b"\n".join(lines)
    if first == 1 or _BLANK_LINE.search(data):
        kept = [i for i, raw in enumerate(lines) if raw.strip() and first + i != 1]
        data = b"\n".join([lines[i] for i in kept])
        numbers = [first + i for i in kept]
    else:
        numbers = list(range(first, first + len(lines)))
    if not numbers:
        return pd.DataFrame()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(path, numbers[data.count(b"\n", 0, exc.start)], "not UTF-8 text; re-save the file as UTF-8") from None
    frame = _arrow_csv(data, layout, len(numbers))
    if frame is None:  # Arrow refused the block, or read it otherwise: pandas' reading names the line
        frame = _pandas_csv(path, layout, data, numbers)
    frame["_line"] = numbers
    return frame


def _arrow_csv(data: bytes, layout: FileLayout, rows: int) -> pd.DataFrame | None:
    """The rows read by Arrow's CSV reader (many times pandas' speed), or None when it cannot
    read them as one row per line."""
    names = [str(i) for i in range(len(layout.columns))]
    try:
        table = pacsv.read_csv(io.BytesIO(data),
                               read_options=pacsv.ReadOptions(column_names=names, block_size=len(data) + 1),
                               parse_options=pacsv.ParseOptions(delimiter=layout.delimiter),
                               convert_options=pacsv.ConvertOptions(
                                   column_types={name: pa.string() for name in names},
                                   strings_can_be_null=False, quoted_strings_can_be_null=False))
    except (pa.ArrowInvalid, ValueError):
        return None
    if table.num_rows != rows:
        return None
    frame = table.to_pandas()
    frame.columns = range(len(names))
    return frame


def _pandas_csv(path, layout: FileLayout, data: bytes, numbers: list[int]) -> pd.DataFrame:
    try:
        frame = pd.read_csv(io.BytesIO(data), sep=layout.delimiter, header=None, dtype=str, encoding="utf-8",
                            keep_default_na=False, names=list(range(len(layout.columns))), index_col=False,
                            skip_blank_lines=False, engine="c")
    except (pd.errors.ParserError, ValueError) as exc:
        match = re.search(r"line (\d+)", str(exc))
        line = numbers[int(match.group(1)) - 1] if match and int(match.group(1)) <= len(numbers) else numbers[0]
        saw = re.search(r"saw (\d+)", str(exc))
        detail = (f"{saw.group(1)} fields where the header has {len(layout.columns)}" if saw
                  else str(exc).strip().splitlines()[-1])
        raise InputError(path, line, f"CSV row cannot be read: {detail}") from None
    if len(frame) != len(numbers):
        raise InputError(path, numbers[0], "a quoted field spans lines; put one reading row per line")
    return frame


def _csv_chunk(path, layout: FileLayout, first: int, lines: list[bytes], ids: IdMapping,
               decimal_comma: bool) -> EventChunk:
    frame = _csv_frame(path, layout, first, lines)
    if frame.empty:
        return EventChunk(b"", [])
    device = (pd.Series(layout.fixed_device, index=frame.index) if layout.fixed_device is not None
              else frame[layout.device])
    if layout.kind == "long":
        long = pd.DataFrame({"_line": frame["_line"], "ts": frame[layout.ts], "device": device,
                             "sensor": frame[layout.sensor], "value": frame[layout.value]})
    else:
        base = pd.DataFrame({"_line": frame["_line"], "ts": frame[layout.ts], "device": device})
        parts = []
        for i in layout.sensors:
            cells = frame[i].str.strip()
            keep = cells != ""  # an empty cell: the sensor did not read at that time
            parts.append(base[keep].assign(sensor=layout.columns[i], value=cells[keep]))
        long = pd.concat(parts).sort_values("_line", kind="stable") if parts else base.iloc[:0]
    long = long.assign(ts=long["ts"].str.strip(), value=long["value"].str.strip())
    if decimal_comma:
        long["value"] = long["value"].str.replace(",", ".", regex=False)
    for column in ("device", "sensor"):
        long[column] = ids.map_series(long[column].str.strip(), long["_line"], path)
    return EventChunk(json_payload(long["ts"], long["device"], long["sensor"], long["value"]), long["_line"].tolist())


# A cell written as a JSON number goes into the body as one, so the drain's columnar parser
# takes the event; "-0" stays a string (JSON's -0 is Python's integer 0, the cell means -0.0).
_JSON_NUMBER = r"^-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?$"
_QUOTES_PER_LINE = {True: 14, False: 16}  # the structural ones, with the value a number or a string


def json_payload(ts: pd.Series, device: pd.Series, sensor: pd.Series, value: pd.Series) -> bytes:
    """``json.dumps({"ts": t, "device": d, "sensor": s, "value": v})`` of each row, one a line,
    built in columns, except that a value cell written as a JSON number goes in as that number."""
    columns = [pa.array(column, type=pa.string(), from_pandas=True) for column in (ts, device, sensor, value)]
    numeric = pc.and_(pc.match_substring_regex(columns[3], _JSON_NUMBER), pc.not_equal(columns[3], "-0"))
    value_text = pc.if_else(numeric, columns[3], pc.binary_join_element_wise('"', columns[3], '"', ""))
    lines = pc.binary_join_element_wise('{"ts": "', columns[0], '", "device": "', columns[1], '", "sensor": "',
                                        columns[2], '", "value": ', value_text, "}\n", "")
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32, count=len(lines) + 1, offset=lines.offset * 4)
    payload = lines.buffers()[2][int(offsets[0]) : int(offsets[-1])].to_pybytes()
    if _written_as_is(payload, pc.sum(numeric).as_py() or 0, len(lines)):
        return payload
    bodies = lines.to_pylist()
    for i in range(len(bodies)):  # escapes or non-ASCII somewhere: json.dumps writes the text
        t, d, s, cell = (column[i].as_py() for column in columns)
        head = json.dumps({"ts": t, "device": d, "sensor": s})[:-1]
        bodies[i] = f'{head}, "value": {cell if numeric[i].as_py() else json.dumps(cell)}}}\n'
    return "".join(bodies).encode("utf-8")


def _written_as_is(payload: bytes, numbers: int, rows: int) -> bool:
    """Whether every line is what json.dumps writes: printable ASCII, no backslash, and only
    the structural quotes (each line holds at least those, so the total tells)."""
    data = np.frombuffer(payload, dtype=np.uint8)
    printable = ((data >= 0x20) & (data < 0x7F)) | (data == 0x0A)
    quotes = int(np.count_nonzero(data == 0x22))
    return (bool(printable.all()) and b"\\" not in payload
            and quotes == numbers * _QUOTES_PER_LINE[True] + (rows - numbers) * _QUOTES_PER_LINE[False])


def iter_event_chunks(path, layout: FileLayout, ids: IdMapping, decimal_comma: bool = False) -> Iterator[EventChunk]:
    """The file's events, a block of lines at a time (a few MB), each body with its line."""
    path = Path(path)
    limit = MAX_EVENT_BYTES if layout.kind == "jsonl" else max(layout.max_line_bytes, len(_first_line(path)))
    for first, lines in _line_blocks(path, limit):
        chunk = (_json_chunk(path, first, lines, ids) if layout.kind == "jsonl"
                 else _csv_chunk(path, layout, first, lines, ids, decimal_comma))
        yield EventChunk(chunk.payload, chunk.lines, sum(map(len, lines)) + len(lines))


def iter_marked_readings(path, layout: FileLayout, ids: IdMapping) -> Iterator[pd.DataFrame]:
    """Per block of a wide CSV, the rows a label column marks: ``ts`` (naive UTC), ``device``
    (mapped as the readings' are), ``kind`` (the label column's name). A cell marks its row
    when it is a nonzero number or ``true``/``yes``; a time that does not parse marks nothing
    (the row's readings are refused by the check anyway)."""
    path = Path(path)
    limit = max(layout.max_line_bytes, len(_first_line(path)))
    for first, lines in _line_blocks(path, limit):
        frame = _csv_frame(path, layout, first, lines)
        if frame.empty:
            continue
        device = (pd.Series(layout.fixed_device, index=frame.index) if layout.fixed_device is not None
                  else frame[layout.device].str.strip())
        ts = pd.to_datetime(frame[layout.ts].str.strip(), format="ISO8601", utc=True, errors="coerce")
        for i in layout.labels:
            cells = frame[i].str.strip()
            number = pd.to_numeric(cells.str.replace(",", ".", regex=False), errors="coerce")
            marked = ((number.notna() & (number != 0)) | cells.str.lower().isin(["true", "yes"])) & ts.notna()
            if marked.any():
                yield pd.DataFrame({"ts": ts[marked].dt.tz_convert(None).astype("datetime64[ns]"),
                                    "device": ids.map_series(device[marked], frame["_line"][marked], path),
                                    "kind": layout.columns[i]})


def refused_events(chunk: EventChunk, now: pd.Timestamp | None = None) -> list[tuple[int, str, str]]:
    """``(line, body, reason)`` of every event of the chunk the drain would dead-letter, in line
    order (a body given on several lines is refused on each)."""
    if not chunk.lines:
        return []
    rejected = parse_event_lines(chunk.payload, now=now, max_age=INGEST_MAX_AGE).rejected
    if rejected.empty:
        return []
    reason_of = dict(zip(rejected["body"], rejected["reason"]))
    return [(line, body, reason_of[body[:MAX_EVENT_BYTES]]) for body, line in zip(chunk.bodies, chunk.lines)
            if body[:MAX_EVENT_BYTES] in reason_of]


def check_chunk(chunk: EventChunk, path, now: pd.Timestamp | None = None) -> tuple[list[InputError], pd.Timestamp | None]:
    """What the drain would dead-letter in the chunk (as errors naming file and line), and the
    earliest accepted reading's time."""
    if not chunk.lines:
        return [], None
    readings, rejected = parse_event_lines_table(chunk.payload, now=now, max_age=INGEST_MAX_AGE)
    earliest = pd.Timestamp(pc.min(readings["ts"]).as_py()) if readings.num_rows else None
    if rejected.empty:
        return [], earliest
    line_of = {}
    for body, line in zip(chunk.bodies, chunk.lines):
        line_of.setdefault(body[:MAX_EVENT_BYTES], line)
    return [InputError(path, line_of.get(body), reason) for body, reason in zip(rejected["body"], rejected["reason"])], earliest
