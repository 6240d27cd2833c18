"""Parse a buffer of newline-delimited JSON events in columns, exactly as the row-wise parser would.

The landing's files and batched event bodies hold millions of readings an hour; parsing each
with ``json.loads`` costs about 9 us. Here the buffer is split on ``\\n`` with numpy, and every
line is tested against the exact shape of a clearly good event with one vectorized regular
expression (RE2, ``GOOD_EVENT``). That shape admits no escapes, so the double quotes of a
matching line are all structural and their positions give each field's bytes: time stamps
are read digit by digit (one run of equal stamps at a time) and checked to be real dates,
numbers are converted by Arrow (correctly rounded, as Python's ``float``), and ranges and
finiteness are checked with vectorized expressions. Every line that fails any test, or has
another shape (aliases in another order, numbers as strings, integer ids, other time zones,
...), goes through the row-wise parser (:func:`scoring.readings.parse_event_bodies_rowwise`),
which stays the reference: accepted readings and dead-letter reasons are those it gives
(``tests/scoring/test_event_lines.py`` compares both on hostile inputs).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from numpy.lib.stride_tricks import as_strided

from scoring.readings import (
    MAX_EVENT_BYTES,
    ParsedBatch,
    empty_readings,
    parse_bodies_rowwise,
    readings_frame,
)

_WS = r"[ \t]{0,4}"  # bounded, so a value lies within a fixed window after its key
# A clearly good event: the four fields in the usual order, string ids, a plain number. Lines
# of any other shape (other key order, numbers as strings, integer ids, escapes, non-ASCII,
# time zones other than UTC, ...) are left to the row-wise parser.
_TS = (r'"[0-9]{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])[T ](?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]'
       r'(?:\.[0-9]{1,9})?(?:Z|\+00:00)?"')
_ID = r'"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}"'
_NUMBER = r"-?(?:0|[1-9][0-9]{0,19})(?:\.[0-9]{1,20})?(?:[eE][-+]?[0-9]{1,2})?"
_FIELDS = [("ts", ("ts", "TS", "timestamp"), _TS), ("device", ("device", "Device"), _ID),
           ("sensor", ("sensor", "Sensor", "Tag", "tag"), _ID), ("value", ("value", "Value", "Val"), _NUMBER)]
GOOD_EVENT = (
    "^" + _WS + r"\{" + _WS
    + ("," + _WS).join(f'"(?:{"|".join(names)})"{_WS}:{_WS}{pattern}{_WS}' for _, names, pattern in _FIELDS)
    + r"\}" + _WS + "\n$"
)


_PAD = 64  # zero bytes after the data, so fixed-width windows near its end stay inside the buffer


def _positions(buf: np.ndarray, byte: int, chunk: int = 1 << 20) -> np.ndarray:
    """Positions of ``byte`` in ``buf``, found a cache-sized chunk at a time."""
    return np.concatenate([np.flatnonzero(buf[a : a + chunk] == byte) + a for a in range(0, len(buf), chunk)]
                          or [np.zeros(0, dtype=np.int64)])


def _lines(data: bytes) -> pa.LargeBinaryArray:
    """Each line of ``data`` with its ``\\n`` (the buffer is given one at the end if it lacks it)."""
    if data and not data.endswith(b"\n"):
        data += b"\n"
    buffer = np.frombuffer(data + bytes(_PAD), dtype=np.uint8)
    ends = _positions(buffer[: len(data)], 10) + 1
    offsets = np.concatenate([[0], ends]).astype(np.int64)
    return pa.Array.from_buffers(pa.large_binary(), len(ends), [None, pa.py_buffer(offsets), pa.py_buffer(buffer)])


def _windows(buf: np.ndarray, starts: np.ndarray, width: int) -> np.ndarray:
    """The ``width`` bytes from each start, as an (n, width) array (one copy of n x width bytes)."""
    return as_strided(buf, shape=(len(buf) - width + 1, width), strides=(1, 1))[starts]


def _gather(buf: np.ndarray, starts: np.ndarray, stops: np.ndarray) -> pa.StringArray:
    """The byte ranges ``[starts, stops)`` of ``buf`` as one Arrow string array."""
    lengths = stops - starts
    offsets = np.zeros(len(starts) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    index = np.repeat(starts - offsets[:-1], lengths) + np.arange(offsets[-1], dtype=np.int64)
    return pa.Array.from_buffers(pa.string(), len(starts), [None, pa.py_buffer(offsets), pa.py_buffer(buf[index])])


def _days_from_civil(year: np.ndarray, month: np.ndarray, day: np.ndarray) -> np.ndarray:
    """Days since 1970-01-01 of proleptic Gregorian dates (H. Hinnant's algorithm)."""
    year = year - (month <= 2)
    era = np.floor_divide(year, 400)
    yoe = year - era * 400
    doy = (153 * (month + np.where(month > 2, -3, 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


_DAYS_IN_MONTH = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])


def _times(buf: np.ndarray, start: np.ndarray, stop: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nanoseconds since the epoch of the time stamps at ``[start, stop)`` (the pattern fixed
    their shape), and whether each is a real date that pandas holds in nanoseconds.

    A fleet's events come in time order, many to a time stamp: each run of equal stamps is
    parsed once.
    """
    window = _windows(buf, start, 36)  # "YYYY-MM-DDTHH:MM:SS" + up to ".fffffffff+00:00"
    window[np.arange(36) >= (stop - start)[:, None]] = 0
    head = np.ones(len(start), dtype=bool)
    head[1:] = (window[1:] != window[:-1]).any(axis=1)
    heads = np.flatnonzero(head)
    window, start, stop = window[heads], start[heads], stop[heads]

    def number(first, width):
        out = window[:, first].astype(np.int64) - 48
        for k in range(first + 1, first + width):
            out = out * 10 + (window[:, k].astype(np.int64) - 48)
        return out

    year, month, day = number(0, 4), number(5, 2), number(8, 2)
    seconds = (number(11, 2) * 60 + number(14, 2)) * 60 + number(17, 2)
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    valid = (day <= _DAYS_IN_MONTH[month] + ((month == 2) & leap)) & (year > 1677) & (year < 2262)
    # Fraction digits: after a "." at 19, up to the zone ("Z" or "+00:00") or the end.
    fraction_digits = np.where(window[:, 19] == ord("."), stop - start - 20, 0)
    fraction_digits -= np.where(buf[stop - 1] == ord("Z"), 1, 0)
    fraction_digits -= np.where(buf[stop - 3] == ord(":"), 6, 0)  # "+00:00"; a fraction holds no ":"
    fraction = np.zeros(len(start), dtype=np.int64)
    for k in range(9):
        fraction = fraction * 10 + np.where(k < fraction_digits, window[:, 20 + k].astype(np.int64) - 48, 0)
    nanos = np.where(valid, _days_from_civil(year, month, day) * 86_400 + seconds, 0) * 1_000_000_000 + fraction
    run = np.cumsum(head) - 1
    return nanos[run], valid[run]


_NUMBER_BYTES = np.zeros(256, dtype=bool)
_NUMBER_BYTES[np.frombuffer(b"0123456789+-.eE", dtype=np.uint8)] = True


def _numbers(buf: np.ndarray, after: np.ndarray, newline: np.ndarray) -> pa.Array:
    """The JSON number after each position (the value key's closing quote) and before the line's
    closing brace, as float64."""
    # Most events are written as json.dumps does: '"value": 12.5}\n'.
    begin, end = after + 2, newline - 1
    plain = (buf[after] == ord(":")) & (buf[after + 1] == ord(" ")) & (buf[end] == ord("}"))
    other = np.flatnonzero(~plain)
    if len(other):  # white space elsewhere: at most 4 + 1 + 4 bytes before a number of at most 46
        numeric = _NUMBER_BYTES[_windows(buf, after[other], 64)]
        first = numeric.argmax(axis=1)
        numeric[np.arange(64) < first[:, None]] = True
        begin[other] = after[other] + first
        end[other] = after[other] + (~numeric).argmax(axis=1)
    return pc.cast(_gather(buf, begin, end), pa.float64())


def _fast_readings(lines: pa.LargeBinaryArray, min_ts: pd.Timestamp, max_ts: pd.Timestamp):
    """Readings of the lines that pass every vectorized test, and a mask of those lines.

    A line that matches ``GOOD_EVENT`` holds exactly 14 double quotes, all structural (the
    pattern admits no escapes): the 4 keys', and those around the time, device and sensor.
    Their positions give every field's bytes without a JSON parser.
    """
    good = pc.match_substring_regex(lines, GOOD_EVENT)
    good = pc.and_(good, pc.less_equal(pc.binary_length(lines), MAX_EVENT_BYTES))
    good = good.fill_null(False).to_numpy(zero_copy_only=False)
    if not good.any():
        return None, good
    buf = np.frombuffer(lines.buffers()[2], dtype=np.uint8)  # the data, then _PAD zero bytes
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int64, count=len(lines) + 1, offset=lines.offset * 8)
    quotes = _positions(buf[offsets[0] : offsets[-1]], 34) + offsets[0]
    first = np.searchsorted(quotes, offsets[:-1][good])
    at = lambda k: quotes[first + k]  # noqa: E731  (position of the line's k-th quote)
    ts, valid = _times(buf, at(2) + 1, at(3))
    value = _numbers(buf, at(13) + 1, offsets[1:][good] - 1)
    number = value.to_numpy(zero_copy_only=False)
    ok = (valid & (ts >= min_ts.value) & (ts <= max_ts.value)
          & np.isfinite(number) & ~((number == 0) & np.signbit(number)))  # JSON's -0 is the integer 0 in Python
    readings = pa.table({"ts": pa.array(ts.astype("datetime64[ns]")), "device": _gather(buf, at(6) + 1, at(7)),
                         "sensor": _gather(buf, at(10) + 1, at(11)), "value": value})
    if not ok.all():
        readings = readings.filter(pa.array(ok))
        good[np.flatnonzero(good)[~ok]] = False
    return readings, good


_SLICE_LINES = 100_000  # lines per slice: bounds the working memory (~120 bytes a line) and feeds threads


def _fast_readings_parallel(lines: pa.LargeBinaryArray, min_ts, max_ts):
    """:func:`_fast_readings` over slices of the lines, in threads (numpy and pyarrow release the GIL)."""
    slices = max(1, -(-len(lines) // _SLICE_LINES))
    if slices == 1:
        return _fast_readings(lines, min_ts, max_ts)
    bounds = np.linspace(0, len(lines), slices + 1).astype(int)
    with ThreadPoolExecutor(min(os.cpu_count() or 1, 4)) as pool:
        results = list(pool.map(lambda ab: _fast_readings(lines.slice(ab[0], ab[1] - ab[0]), min_ts, max_ts),
                                zip(bounds[:-1], bounds[1:])))
    tables = [table for table, _ in results if table is not None]
    good = np.concatenate([mask for _, mask in results])
    return (pa.concat_tables(tables) if tables else None), good


def parse_event_lines(
    data: bytes,
    *,
    now: pd.Timestamp | None = None,
    max_age: pd.Timedelta = pd.Timedelta(days=3650),
    max_ahead: pd.Timedelta = pd.Timedelta(hours=1),
) -> ParsedBatch:
    """Parse newline-delimited JSON events in columns; reject each bad one with its reason.

    The result equals ``parse_event_bodies`` applied to every line (split on ``\\n`` only,
    decoded as UTF-8 with invalid bytes replaced) that holds more than white space.

    Parameters
    ----------
    data : bytes
        One JSON object per line, as the landing's files hold them.
    now, max_age, max_ahead
        As for :func:`scoring.readings.parse_event_bodies`.

    Returns
    -------
    ParsedBatch
        Accepted readings in line order, and the rejected lines with a reason each.

    Examples
    --------
    >>> parse_event_lines(b'{"ts": "2026-06-01T10:00:05", "device": "7", "sensor": "1", "value": 1.5}\\n',
    ...                   now=pd.Timestamp("2026-06-01T12:00")).readings["device"].tolist()
    ['7']
    """
    readings, rejected = parse_event_lines_table(data, now=now, max_age=max_age, max_ahead=max_ahead)
    return ParsedBatch(readings.to_pandas() if readings.num_rows else empty_readings(), rejected)


READINGS_SCHEMA = pa.schema([("ts", pa.timestamp("ns")), ("device", pa.string()), ("sensor", pa.string()),
                             ("value", pa.float64())])


def parse_event_lines_table(
    data: bytes,
    *,
    now: pd.Timestamp | None = None,
    max_age: pd.Timedelta = pd.Timedelta(days=3650),
    max_ahead: pd.Timedelta = pd.Timedelta(hours=1),
) -> tuple[pa.Table, pd.DataFrame]:
    """:func:`parse_event_lines` with the accepted readings as an Arrow table, for callers that
    stay in columns (the drain): strings stay Arrow strings, not a Python object each.

    Returns
    -------
    readings : pyarrow.Table
        ``ts`` (``timestamp[ns]``), ``device``, ``sensor``, ``value``, in line order.
    rejected : DataFrame
        ``body, reason`` of each rejected line.
    """
    now = now if now is not None else pd.Timestamp.now("UTC").tz_localize(None)
    min_ts, max_ts = now - max_age, now + max_ahead
    lines = _lines(bytes(data))
    fast, good = _fast_readings_parallel(lines, min_ts, max_ts)
    bodies, positions = [], []
    for i in np.flatnonzero(~good):
        text = lines[int(i)].as_py()[:-1].decode("utf-8", errors="replace")
        if text.strip():
            bodies.append(text)
            positions.append(i)
    rows, accepted, rejected = parse_bodies_rowwise(bodies, min_ts, max_ts)
    rejected = pd.DataFrame(rejected, columns=["body", "reason"])
    slow = pa.Table.from_pandas(readings_frame(rows), schema=READINGS_SCHEMA, preserve_index=False)
    if fast is None:
        return slow, rejected
    if not rows:
        return fast, rejected
    # Lines the row-wise parser accepted go back to their place among the others.
    where = np.concatenate([np.flatnonzero(good), np.asarray(positions, dtype=np.int64)[accepted]])
    readings = pa.concat_tables([fast, slow]).take(pa.array(np.argsort(where, kind="stable")))
    return readings, rejected
