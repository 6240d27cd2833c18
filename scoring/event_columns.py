"""Judge events written from columns of cells as the drain's parser will judge their lines, without parsing the lines.

``bscore ingest`` writes a CSV block's readings as lines
``{"ts": "<ts>", "device": "<device>", "sensor": "<sensor>", "value": <value>}`` (the value bare
when it is a JSON number, else quoted; :func:`scoring.event_chunks.json_payload`). The drain's
parser (:mod:`scoring.event_lines`) accepts such a line on its fast path when its cells pass that
path's tests: the time stamp's shape, a real date in range, plain ids, a finite number, the line's
length. Here the same tests run on the cells themselves (a time stamp once per run of equal
stamps, an id once per distinct id), and every line that fails any of them goes through the
drain's parser as a line, which gives its verdict and reason. The tests are the fast path's, or
stricter, so a line passed here is one the parser accepts.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from scoring.event_lines import _NUMBER, _PAD, _TS, _times, parse_event_lines_table
from scoring.readings import ID_PATTERN, MAX_EVENT_BYTES

_TS_CELL = "^" + _TS[1:-1] + "$"  # the pattern without its quotes
_NUMBER_CELL = "^" + _NUMBER + "$"


def _offsets(column: pa.Array) -> np.ndarray:
    return np.frombuffer(column.buffers()[1], dtype=np.int32, count=len(column) + 1, offset=column.offset * 4)


def _plain_ids(column: pa.Array | pa.Scalar, rows: int) -> np.ndarray | bool:
    """Whether each row's id is one the fast path takes as it is."""
    if isinstance(column, pa.Scalar):
        return bool(ID_PATTERN.fullmatch(column.as_py()))
    bad = [name for name in pc.unique(column).to_pylist() if not ID_PATTERN.fullmatch(name)]
    if not bad:
        return True
    return ~pc.is_in(column, value_set=pa.array(bad, pa.string())).to_numpy(zero_copy_only=False)


def _stamp_times(ts: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Nanoseconds since the epoch of each time stamp, and whether it has the fast path's shape
    and is a real date; parsed once per run of equal stamps."""
    rows = len(ts)
    head = np.ones(rows, dtype=bool)
    if rows > 1:
        head[1:] = pc.not_equal(ts.slice(1), ts.slice(0, rows - 1)).to_numpy(zero_copy_only=False)
    run = np.cumsum(head) - 1
    stamps = ts.take(np.flatnonzero(head))
    shaped = pc.match_substring_regex(stamps, _TS_CELL).to_numpy(zero_copy_only=False)
    nanos, valid = np.zeros(len(stamps), dtype=np.int64), np.zeros(len(stamps), dtype=bool)
    if shaped.any():
        offsets = _offsets(stamps)
        data = np.frombuffer(stamps.buffers()[2], dtype=np.uint8)[: offsets[-1]]
        buf = np.concatenate([data, np.zeros(_PAD, dtype=np.uint8)])
        at = np.flatnonzero(shaped)
        nanos[at], valid[at] = _times(buf, offsets[:-1][at].astype(np.int64), offsets[1:][at].astype(np.int64))
    return nanos[run], valid[run]


def judge_event_columns(lines: pa.Array, ts: pa.Array, device, sensor, value: pa.Array, numeric: pa.Array, *,
                        now: pd.Timestamp | None = None, max_age: pd.Timedelta = pd.Timedelta(days=3650),
                        max_ahead: pd.Timedelta = pd.Timedelta(hours=1)) -> tuple[pd.Timestamp | None, pd.DataFrame]:
    """The earliest accepted reading's time and the rejected lines (``body, reason``, in line
    order), as :func:`scoring.event_lines.parse_event_lines_table` gives them for ``lines``.

    Parameters
    ----------
    lines : pyarrow.StringArray
        The events, each ending in ``\\n``, written from the cells (none of which needs escaping).
    ts, device, sensor, value : pyarrow.StringArray
        The cells each line was written from; ``device`` and ``sensor`` may be one scalar for all.
    numeric : pyarrow.BooleanArray
        Whether the line holds its value bare (a JSON number) rather than quoted.
    now, max_age, max_ahead
        As for :func:`scoring.readings.parse_event_bodies`.
    """
    now = now if now is not None else pd.Timestamp.now("UTC").tz_localize(None)
    rows = len(lines)
    good = np.diff(_offsets(lines)) <= MAX_EVENT_BYTES
    good &= pc.and_(numeric, pc.match_substring_regex(value, _NUMBER_CELL)).to_numpy(zero_copy_only=False)
    good &= _plain_ids(device, rows) & _plain_ids(sensor, rows)
    nanos, valid = _stamp_times(ts)
    good &= valid & (nanos >= (now - max_age).value) & (nanos <= (now + max_ahead).value)
    number = pc.cast(value.filter(pa.array(good)), pa.float64()).to_numpy(zero_copy_only=False)
    good[np.flatnonzero(good)[~np.isfinite(number) | ((number == 0) & np.signbit(number))]] = False
    earliest = nanos[good].min() if good.any() else None
    rejected = pd.DataFrame(columns=["body", "reason"])
    others = np.flatnonzero(~good)
    if len(others):
        rest = lines.take(others)
        readings, rejected = parse_event_lines_table(
            rest.buffers()[2][_offsets(rest)[0] : _offsets(rest)[-1]].to_pybytes(),
            now=now, max_age=max_age, max_ahead=max_ahead)
        if readings.num_rows:
            slowest = pc.cast(pc.min(readings["ts"]), pa.int64()).as_py()
            earliest = slowest if earliest is None else min(earliest, slowest)
    return (pd.Timestamp(int(earliest)) if earliest is not None else None), rejected
