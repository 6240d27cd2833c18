"""A file's readings as event bodies, a block of lines at a time, in columns, checked as the drain checks them.

A file is read in blocks of whole lines (``BLOCK_BYTES``), never whole: a line longer than its
layout's limit, a NUL byte (not a text file) or bytes that are not UTF-8 are refused with the
file and line named. A block becomes an :class:`EventChunk`: newline-delimited JSON bodies, as
devices send them and as the landing keeps them. A JSON-lines block whose events the drain's
parser accepts is landed as it is; a CSV block is read by Arrow's CSV reader and its bodies are
written in columns (:func:`json_payload`). :func:`check_chunk` judges a chunk as the drain's own
parser (:func:`scoring.event_lines.parse_event_lines_table`) will, so what it refuses is what the
drain would dead-letter: a JSON-lines block is parsed once, for its ids and its check; a CSV
block's events are judged from its cells (:mod:`scoring.event_columns`).
"""

from __future__ import annotations

import dataclasses
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from scoring.event_columns import judge_event_columns
from scoring.event_lines import parse_event_lines_table
from scoring.input_files import INGEST_MAX_AGE, FileLayout, IdMapping, InputError, _decode, _first_line
from scoring.readings import FIELD_ALIASES, MAX_EVENT_BYTES

BLOCK_BYTES = 4 << 20  # large enough that per-block costs vanish, small enough to bound memory
# A JSON-lines block of twice that holds about 100,000 events, which the drain's parser splits
# into two slices parsed on two threads.
JSON_BLOCK_BYTES = 2 * BLOCK_BYTES


@dataclass(frozen=True)
class EventChunk:
    """Event bodies read from a block of a file, newline-delimited, with the line each came from."""

    payload: bytes  # one body per line, each ending in "\n"; bodies hold no newline
    lines: np.ndarray | None  # each body's line; None for a block landed as it is (nothing in it is refused)
    events: int
    nbytes: int = 0  # of the file, for progress
    # (earliest accepted time, rejected ``body, reason``) when reading judged the events already
    verdict: tuple[pd.Timestamp | None, pd.DataFrame] | None = None

    @property
    def bodies(self) -> list[str]:
        """One string per event (blank lines of a block landed as it is left out)."""
        return [body for body in self.payload.decode("utf-8", errors="replace").split("\n") if body.strip()]


def _earliest(readings: pa.Table) -> pd.Timestamp | None:
    return pd.Timestamp(pc.min(readings["ts"]).as_py()) if readings.num_rows else None


def _payload(bodies: list[str]) -> bytes:
    return "".join(body + "\n" for body in bodies).encode("utf-8")


def _refuse_long_lines(path, first: int, block: bytes, limit: int) -> None:
    """Refuse the block's first line longer than ``limit`` bytes (its ``\\n`` not counted).

    Such a line holds a whole aligned stretch of ``limit // 2`` bytes without a line end, so
    only blocks with such a stretch are measured line by line."""
    step = max(1, limit // 2)
    if all(block.find(b"\n", at, at + step) >= 0 for at in range(0, len(block) - step + 1, step)):
        return
    ends = np.flatnonzero(np.frombuffer(block, dtype=np.uint8) == 10)
    over = np.flatnonzero(np.diff(ends, prepend=-1) - 1 > limit)
    if len(over):
        raise InputError(path, first + int(over[0]), f"line is longer than {limit} bytes")


def _line_blocks(path: Path, max_line_bytes: int, block_bytes: int = BLOCK_BYTES) -> Iterator[tuple[int, bytes]]:
    """``(first line number, block)`` per block of whole lines, header included, each line ending
    in ``\\n`` (the file's last line is given one); memory bounded by ``block_bytes + max_line_bytes``."""
    line_no, rest = 1, b""
    with open(path, "rb") as handle:
        while True:
            data = handle.read(block_bytes)
            if b"\0" in data:
                buf = rest + data
                raise InputError(path, line_no + buf.count(b"\n", 0, buf.index(b"\0")),
                                 "not a text file (NUL byte); give CSV or JSON-lines readings")
            if not data:
                if rest:
                    _refuse_long_lines(path, line_no, rest + b"\n", max_line_bytes)
                    yield line_no, rest + b"\n"
                return
            cut = data.rfind(b"\n") + 1
            if not cut:
                rest += data
                if len(rest) > max_line_bytes:
                    raise InputError(path, line_no, f"line is longer than {max_line_bytes} bytes")
                continue
            block = b"".join((rest, memoryview(data)[:cut]))  # one copy of the block
            rest = data[cut:]
            if len(rest) > max_line_bytes:
                raise InputError(path, line_no + block.count(b"\n"), f"line is longer than {max_line_bytes} bytes")
            if block:
                _refuse_long_lines(path, line_no, block, max_line_bytes)
                yield line_no, block
                line_no += block.count(b"\n")


def _json_chunk(path, first: int, block: bytes, ids: IdMapping, now=None) -> EventChunk:
    """The block as it is when the drain's parser accepts every event in it and its ids need no
    mapping (they are still checked against the mapping); otherwise line by line."""
    readings, rejected = parse_event_lines_table(block, now=now, max_age=INGEST_MAX_AGE)
    if rejected.empty:
        try:
            for column in ("device", "sensor"):
                for name in pc.unique(readings[column]).to_pylist():
                    ids.map_name(name, path, None)  # refuses an id another name maps to
        except InputError:
            pass  # line by line, which names the line
        else:
            return EventChunk(block, None, readings.num_rows, verdict=(_earliest(readings), rejected))
    return _mapped_json_chunk(path, first, block.split(b"\n")[:-1], ids)


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
    return EventChunk(_payload(bodies), np.asarray(numbers, dtype=np.int64), len(numbers))


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


def _column_names(layout: FileLayout) -> list[str]:
    return [str(i) for i in range(len(layout.columns))]


def _empty_rows(layout: FileLayout) -> pa.Table:
    return pa.table({name: pa.array([], pa.string()) for name in _column_names(layout)})


def _csv_rows(path, layout: FileLayout, first: int, block: bytes) -> tuple[pa.Table, np.ndarray]:
    """The block's rows (header and blank lines left out) as text columns ``"0".."n-1"``, and
    each row's line in the file."""
    if first == 1:
        block, first = block[block.index(b"\n") + 1 :], 2
    count = block.count(b"\n")
    if not count:
        return _empty_rows(layout), np.zeros(0, dtype=np.int64)
    table = _arrow_csv(block, layout)
    if table is not None and table.num_rows == count:  # one row a line: no blank line, no quoted line end
        return table, np.arange(first, first + count, dtype=np.int64)
    lines = block.split(b"\n")[:-1]
    kept = [i for i, raw in enumerate(lines) if raw.strip()]
    data = b"\n".join([lines[i] for i in kept])
    numbers = np.asarray([first + i for i in kept], dtype=np.int64)
    if not kept:
        return _empty_rows(layout), numbers
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(path, int(numbers[data.count(b"\n", 0, exc.start)]),
                         "not UTF-8 text; re-save the file as UTF-8") from None
    table = _arrow_csv(data, layout)
    if table is None or table.num_rows != len(kept):  # pandas' reading names the line
        frame = _pandas_csv(path, layout, data, numbers.tolist())
        table = pa.table({name: pa.array(frame[i], pa.string()) for i, name in enumerate(_column_names(layout))})
    return table, numbers


def _arrow_csv(data: bytes, layout: FileLayout) -> pa.Table | None:
    """The rows as Arrow's CSV reader reads them (text columns ``"0".."n-1"``, many times
    pandas' speed), or None when it cannot read them."""
    names = _column_names(layout)
    try:
        return pacsv.read_csv(io.BytesIO(data),
                              # One block, so threads would not help; and a pool thread still
                              # alive at exit can abort the process (apache/arrow#34314).
                              read_options=pacsv.ReadOptions(column_names=names, block_size=len(data) + 1,
                                                             use_threads=False),
                              parse_options=pacsv.ParseOptions(delimiter=layout.delimiter),
                              convert_options=pacsv.ConvertOptions(
                                  column_types={name: pa.string() for name in names},
                                  strings_can_be_null=False, quoted_strings_can_be_null=False))
    except (pa.ArrowInvalid, ValueError):
        return None


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


def _text_buffers(column: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """A string array's offsets and its bytes."""
    offsets = np.frombuffer(column.buffers()[1], dtype=np.int32, count=len(column) + 1, offset=column.offset * 4)
    data = column.buffers()[2]
    return offsets, np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(1, dtype=np.uint8)


# A byte that may be (part of) white space at a cell's edge: ASCII space or control, or non-ASCII.
_MAYBE_SPACE = np.zeros(256, dtype=bool)
_MAYBE_SPACE[:0x21] = _MAYBE_SPACE[0x7F:] = True


def _stripped(column) -> pa.Array:
    """Each cell as ``str.strip`` leaves it; cells are only touched when an edge byte may be white space."""
    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    offsets, data = _text_buffers(column)
    filled = offsets[1:] > offsets[:-1]
    if not (_MAYBE_SPACE[data[offsets[:-1][filled]]].any() or _MAYBE_SPACE[data[offsets[1:][filled] - 1]].any()):
        return column
    return pa.array([cell.strip() for cell in column.to_pylist()], type=pa.string())


def _mapped_ids(ids: IdMapping, column: pa.Array, lines: np.ndarray, path) -> pa.Array:
    """The column's names as ids (each distinct name mapped once)."""
    uniques = pc.unique(column)
    names = uniques.to_pylist()
    mapped = []
    for name in names:
        try:
            mapped.append(ids.map_name(name, path, None))
        except InputError as exc:
            raise InputError(path, int(lines[pc.index(column, name).as_py()]), exc.message) from None
    if mapped == names:
        return column
    return pa.array(mapped, type=pa.string()).take(pc.index_in(column, value_set=uniques))


def _csv_chunk(path, layout: FileLayout, first: int, block: bytes, ids: IdMapping,
               decimal_comma: bool, now=None) -> EventChunk:
    table, lines = _csv_rows(path, layout, first, block)
    if not len(lines):
        return EventChunk(b"", lines, 0)
    cell = lambda i: table.column(str(i)).combine_chunks()  # noqa: E731
    device = (pa.scalar(ids.map_name(layout.fixed_device, path, int(lines[0])), pa.string())
              if layout.fixed_device is not None else _mapped_ids(ids, _stripped(cell(layout.device)), lines, path))
    ts = _stripped(cell(layout.ts))
    if layout.kind == "long":
        sensor, value = _mapped_ids(ids, _stripped(cell(layout.sensor)), lines, path), _stripped(cell(layout.value))
    else:
        rows, sensors = len(lines), len(layout.sensors)
        values = pa.concat_arrays([_stripped(cell(i)) for i in layout.sensors])
        offsets, _ = _text_buffers(values)
        # Row by row, a row's sensors in column order; an empty cell: the sensor did not read then.
        order = (np.arange(sensors)[None, :] * rows + np.arange(rows)[:, None]).ravel()
        order = order[(offsets[1:] > offsets[:-1])[order]]
        which, row = np.divmod(order, rows)
        names = [layout.columns[i] for i in layout.sensors]
        for k in np.flatnonzero(np.bincount(which, minlength=sensors)):
            try:
                names[k] = ids.map_name(names[k], path, None)
            except InputError as exc:
                raise InputError(path, int(lines[row[np.argmax(which == k)]]), exc.message) from None
        value, sensor, ts, lines = values.take(order), pa.array(names, pa.string()).take(which), ts.take(row), lines[row]
        device = device if isinstance(device, pa.Scalar) else device.take(row)
    if decimal_comma:
        value = pc.replace_substring(value, ",", ".")
    payload, written = _json_lines(ts, device, sensor, value)
    if written is None:
        return EventChunk(payload, lines, len(lines))
    verdict = judge_event_columns(written[0], ts, device, sensor, value, written[1], now=now, max_age=INGEST_MAX_AGE)
    return EventChunk(payload, lines, len(lines), verdict=verdict)


# A cell written as a JSON number goes into the body as one, so the drain's columnar parser
# takes the event; "-0" stays a string (JSON's -0 is Python's integer 0, the cell means -0.0).
_JSON_NUMBER = r"^-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?$"
# A byte json.dumps would not write as it is: a control character, non-ASCII, a quote, a backslash.
_ESCAPED = np.zeros(256, dtype=bool)
_ESCAPED[:0x20] = _ESCAPED[0x7F:] = True
_ESCAPED[[ord('"'), ord("\\")]] = True


def _text(column) -> pa.Array | pa.Scalar:
    if isinstance(column, (pa.Array, pa.Scalar)):
        return column
    if isinstance(column, pa.ChunkedArray):
        return column.combine_chunks()
    return pa.array(column, type=pa.string(), from_pandas=True)


def _written_as_is(column: pa.Array | pa.Scalar) -> bool:
    """Whether json.dumps writes every cell as it is (between its quotes)."""
    if isinstance(column, pa.Scalar):
        return not _ESCAPED[np.frombuffer(column.as_py().encode("utf-8"), dtype=np.uint8)].any()
    offsets, data = _text_buffers(column)
    return not _ESCAPED[data[offsets[0] : offsets[-1]]].any()


def json_payload(ts, device, sensor, value) -> bytes:
    """``json.dumps({"ts": t, "device": d, "sensor": s, "value": v})`` of each row, one a line,
    built in columns, except that a value cell written as a JSON number goes in as that number.
    Columns are Arrow string arrays (a scalar for one value in every row) or pandas Series."""
    return _json_lines(ts, device, sensor, value)[0]


def _json_lines(ts, device, sensor, value) -> tuple[bytes, tuple[pa.Array, pa.Array] | None]:
    """:func:`json_payload`, and the lines as an Arrow array with whether each value went in as
    a number; None for those when a cell needed escaping (the lines were then written one by one)."""
    columns = [_text(column) for column in (ts, device, sensor, value)]
    numeric = pc.and_(pc.match_substring_regex(columns[3], _JSON_NUMBER), pc.not_equal(columns[3], "-0"))
    value_text = pc.if_else(numeric, columns[3], pc.binary_join_element_wise('"', columns[3], '"', ""))
    lines = pc.binary_join_element_wise('{"ts": "', columns[0], '", "device": "', columns[1], '", "sensor": "',
                                        columns[2], '", "value": ', value_text, "}\n", "")
    if all(map(_written_as_is, columns)):
        offsets, _ = _text_buffers(lines)
        return lines.buffers()[2][int(offsets[0]) : int(offsets[-1])].to_pybytes(), (lines, numeric)
    rows = len(lines)
    cells = [[column.as_py()] * rows if isinstance(column, pa.Scalar) else column.to_pylist() for column in columns]
    is_number = numeric.to_pylist()
    bodies = []
    for t, d, s, cell, number in zip(*cells, is_number):  # escapes or non-ASCII somewhere: json.dumps writes the text
        head = json.dumps({"ts": t, "device": d, "sensor": s})[:-1]
        bodies.append(f'{head}, "value": {cell if number else json.dumps(cell)}}}\n')
    return "".join(bodies).encode("utf-8"), None


def iter_event_chunks(path, layout: FileLayout, ids: IdMapping, decimal_comma: bool = False,
                      now: pd.Timestamp | None = None) -> Iterator[EventChunk]:
    """The file's events, a block of lines at a time (a few MB), each body with its line;
    ``now`` is the time the drain's parser judges JSON-lines blocks by (default: now)."""
    path = Path(path)
    limit = MAX_EVENT_BYTES if layout.kind == "jsonl" else max(layout.max_line_bytes, len(_first_line(path)))
    for first, block in _line_blocks(path, limit, JSON_BLOCK_BYTES if layout.kind == "jsonl" else BLOCK_BYTES):
        chunk = (_json_chunk(path, first, block, ids, now) if layout.kind == "jsonl"
                 else _csv_chunk(path, layout, first, block, ids, decimal_comma, now))
        yield dataclasses.replace(chunk, nbytes=len(block))


def iter_marked_readings(path, layout: FileLayout, ids: IdMapping) -> Iterator[pd.DataFrame]:
    """Per block of a wide CSV, the rows a label column marks: ``ts`` (naive UTC), ``device``
    (mapped as the readings' are), ``kind`` (the label column's name). A cell marks its row
    when it is a nonzero number or ``true``/``yes``; a time that does not parse marks nothing
    (the row's readings are refused by the check anyway)."""
    path = Path(path)
    limit = max(layout.max_line_bytes, len(_first_line(path)))
    for first, block in _line_blocks(path, limit):
        table, lines = _csv_rows(path, layout, first, block)
        if not len(lines):
            continue
        cell = lambda i: table.column(str(i)).to_pandas().str.strip()  # noqa: E731
        device = pd.Series(layout.fixed_device, index=range(len(lines))) if layout.fixed_device is not None \
            else cell(layout.device)
        ts = pd.to_datetime(cell(layout.ts), format="ISO8601", utc=True, errors="coerce")
        for i in layout.labels:
            cells = cell(i)
            number = pd.to_numeric(cells.str.replace(",", ".", regex=False), errors="coerce")
            marked = ((number.notna() & (number != 0)) | cells.str.lower().isin(["true", "yes"])) & ts.notna()
            if marked.any():
                yield pd.DataFrame({"ts": ts[marked].dt.tz_convert(None).astype("datetime64[ns]"),
                                    "device": ids.map_series(device[marked], pd.Series(lines)[marked], path),
                                    "kind": layout.columns[i]})


@dataclass(frozen=True)
class ChunkCheck:
    """What the drain would make of a chunk's events."""

    refused: list[tuple[int, str, str]]  # (line, body, reason) of each event it would dead-letter, in line order
    earliest: pd.Timestamp | None  # the earliest accepted reading's time
    landable: bytes  # the payload without the refused events


def check_chunk(chunk: EventChunk, now: pd.Timestamp | None = None) -> ChunkCheck:
    """Judge the chunk's events as the drain's parser will (once: a chunk judged as it was read is
    not judged again)."""
    if not chunk.events:
        return ChunkCheck([], None, b"")
    if chunk.verdict is not None:
        earliest, rejected = chunk.verdict
    else:
        readings, rejected = parse_event_lines_table(chunk.payload, now=now, max_age=INGEST_MAX_AGE)
        earliest = _earliest(readings)
    if rejected.empty:
        return ChunkCheck([], earliest, chunk.payload)
    reason_of = dict(zip(rejected["body"], rejected["reason"]))
    refused, kept = [], []
    for body, line in zip(chunk.bodies, chunk.lines):  # a body given on several lines is refused on each
        reason = reason_of.get(body[:MAX_EVENT_BYTES])
        if reason is None:
            kept.append(body)
        else:
            refused.append((int(line), body, reason))
    return ChunkCheck(refused, earliest, _payload(kept))
