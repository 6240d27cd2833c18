"""Parse a buffer of newline-delimited JSON events in columns, exactly as the row-wise parser would.

The landing's files and batched event bodies hold millions of readings an hour; parsing each
with ``json.loads`` costs about 9 us. Here the buffer is split on ``\\n`` with numpy, every
line is tested against the shape of a clearly good event with one vectorized regular
expression (RE2), the lines that pass are parsed together by pyarrow's JSON reader and their
time stamps, ids and values are checked with vectorized expressions. Every line that fails
any of these tests, or that the columnar path cannot decide, goes through the row-wise parser
(:func:`scoring.readings.parse_event_bodies`), which stays the reference: accepted readings
and dead-letter reasons are those it gives (``tests/scoring/test_event_lines.py`` compares
both on hostile inputs).
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from scoring.readings import (
    MAX_EVENT_BYTES,
    ParsedBatch,
    parse_bodies_rowwise,
    readings_frame,
)

_WS = r"[ \t]*"
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
_SCHEMA = pa.schema([(name, pa.string() if canonical != "value" else pa.float64())
                     for canonical, names, _ in _FIELDS for name in names])


def _lines(data: bytes) -> pa.LargeBinaryArray:
    """Each line of ``data`` with its ``\\n`` (the buffer is given one at the end if it lacks it)."""
    if data and not data.endswith(b"\n"):
        data += b"\n"
    ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10) + 1
    offsets = np.concatenate([[0], ends]).astype(np.int64)
    return pa.Array.from_buffers(pa.large_binary(), len(ends), [None, pa.py_buffer(offsets), pa.py_buffer(data)])


def _fast_readings(lines: pa.LargeBinaryArray, min_ts: pd.Timestamp, max_ts: pd.Timestamp):
    """Readings of the lines that pass every vectorized test, and a mask of those lines."""
    good = pc.match_substring_regex(lines, GOOD_EVENT)
    good = pc.and_(good, pc.less_equal(pc.binary_length(lines), MAX_EVENT_BYTES))
    good = good.fill_null(False).to_numpy(zero_copy_only=False)
    if not good.any():
        return None, good
    chosen = lines if good.all() else lines.filter(pa.array(good))
    body = chosen.buffers()[2]
    offsets = np.frombuffer(chosen.buffers()[1], dtype=np.int64, count=len(chosen) + 1, offset=chosen.offset * 8)
    buffer = body.slice(int(offsets[0]), int(offsets[-1] - offsets[0]))
    table = pj.read_json(io.BytesIO(buffer), parse_options=pj.ParseOptions(
        explicit_schema=_SCHEMA, unexpected_field_behavior="error"))
    if len(table) != len(chosen):  # never expected: the reader must see exactly the chosen lines
        raise RuntimeError(f"JSON reader saw {len(table)} events in {len(chosen)} lines")
    columns = {}
    for canonical, names, _ in _FIELDS:
        present = [table[name] for name in names]
        columns[canonical] = present[0] if len(present) == 1 else pc.coalesce(*present)
    # Times: naive or UTC (the pattern allows no other zone). The seconds parser takes
    # 2026-02-30 for 2026-03-02, so a day that comes back different was not a real date.
    text = columns["ts"]
    seconds_text = pc.replace_substring(pc.utf8_slice_codeunits(text, 0, 19), " ", "T")
    seconds = pc.strptime(seconds_text, format="%Y-%m-%dT%H:%M:%S", unit="s", error_is_null=True)
    valid = pc.equal(pc.day(seconds), pc.cast(pc.utf8_slice_codeunits(seconds_text, 8, 10), pa.int64()))
    # The fraction's digits without the zone, and without trailing zeros, which do not count.
    fraction = pc.utf8_rpad(pc.utf8_rtrim(pc.utf8_slice_codeunits(text, 20, 40), "Z+0:"), 9, "0")
    nanos = pc.cast(seconds, pa.int64()).to_numpy(zero_copy_only=False)
    in_ns = np.abs(nanos) < 9_000_000_000  # pandas' nanosecond range is about +-292 years around 1970
    ts = np.where(in_ns, nanos, 0) * 1_000_000_000 + pc.cast(fraction, pa.int64()).to_numpy(zero_copy_only=False)
    value = columns["value"].to_numpy(zero_copy_only=False)
    ok = (valid.fill_null(False).to_numpy(zero_copy_only=False) & in_ns
          & (ts >= min_ts.value) & (ts <= max_ts.value)
          & np.isfinite(value) & ~((value == 0) & np.signbit(value)))  # JSON's -0 is the integer 0 in Python
    readings = pa.table({"ts": pa.array(ts.astype("datetime64[ns]")), "device": columns["device"],
                         "sensor": columns["sensor"], "value": columns["value"]})
    if not ok.all():
        readings = readings.filter(pa.array(ok))
        good[np.flatnonzero(good)[~ok]] = False
    return readings, good


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
    now = now if now is not None else pd.Timestamp.now("UTC").tz_localize(None)
    min_ts, max_ts = now - max_age, now + max_ahead
    lines = _lines(bytes(data))
    fast, good = _fast_readings(lines, min_ts, max_ts)
    bodies, positions = [], []
    for i in np.flatnonzero(~good):
        text = lines[int(i)].as_py()[:-1].decode("utf-8", errors="replace")
        if text.strip():
            bodies.append(text)
            positions.append(i)
    rows, accepted, rejected = parse_bodies_rowwise(bodies, min_ts, max_ts)
    rejected = pd.DataFrame(rejected, columns=["body", "reason"])
    if fast is None:
        return ParsedBatch(readings_frame(rows), rejected)
    readings = fast.to_pandas()
    if rows:
        # Lines the row-wise parser accepted go back to their place among the others.
        slow = readings_frame(rows).astype(readings.dtypes.to_dict())
        where = np.concatenate([np.flatnonzero(good), np.asarray(positions, dtype=np.int64)[accepted]])
        readings = pd.concat([readings, slow], ignore_index=True).take(np.argsort(where, kind="stable"))
        readings = readings.reset_index(drop=True)
    return ParsedBatch(readings, rejected)
