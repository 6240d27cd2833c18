"""Parse and validate sensor readings from either field naming into one canonical table.

Canonical columns: ``ts`` (naive UTC ``datetime64[ns]``), ``device`` and ``sensor``
(strings), ``value`` (float64). The reference implementation's names ``TS``, ``Device``,
``Tag`` or ``Sensor`` and ``Value`` are accepted too.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass

import pandas as pd

READING_COLUMNS = ["ts", "device", "sensor", "value"]
FIELD_ALIASES = {
    "ts": "ts", "TS": "ts", "timestamp": "ts",
    "device": "device", "Device": "device",
    "sensor": "sensor", "Sensor": "sensor", "Tag": "sensor", "tag": "sensor",
    "value": "value", "Value": "value", "Val": "value",
}
MAX_EVENT_BYTES = 4096


@dataclass(frozen=True)
class ParsedBatch:
    """Readings accepted from a batch, and the rejected ones with their reasons."""

    readings: pd.DataFrame
    rejected: pd.DataFrame  # columns: body, reason


def empty_readings() -> pd.DataFrame:
    """An empty canonical readings table."""
    return pd.DataFrame(
        {
            "ts": pd.Series([], dtype="datetime64[ns]"),
            "device": pd.Series([], dtype=object),
            "sensor": pd.Series([], dtype=object),
            "value": pd.Series([], dtype="float64"),
        }
    )


ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")


def _canonical_id(raw) -> str:
    """A device or sensor id: a string or an integer; it becomes part of blob keys, so no ``/``."""
    if isinstance(raw, float) and raw.is_integer():
        raw = int(raw)
    if isinstance(raw, bool) or not isinstance(raw, (str, int)):
        raise ValueError("must be a string or an integer")
    text = str(raw).strip()
    if not ID_PATTERN.fullmatch(text):
        raise ValueError(f"{text[:70]!r} must be 1-64 letters, digits or . _ : - (starting with a letter or digit)")
    return text


# ISO-8601 forms pandas refuses: 24:00:00 (the end of a day) and a leap second (:59:60).
# Only the row-wise path sees them (the columnar one admits hours 00-23 and seconds 00-59).
_EDGE_TIME = re.compile(r"(\d{4}-\d{2}-\d{2})[T ](?:(24):00:00(?:\.0+)?|(\d{2}):59:60(\.\d+)?)(Z|[+-]\d{2}:?\d{2})?")


def iso_edge_time(text) -> pd.Timestamp | None:
    """The time an ISO-8601 ``24:00:00`` or leap-second stamp stands for, or ``None`` for any other text.

    ``24:00:00`` is the next day's ``00:00:00``; a leap second ``hh:59:60[.f]`` is clamped to
    ``hh:59:59.999999999``, so that its reading stays in the minute, window and hour it was
    sent in (numpy and pandas times have no leap seconds).

    >>> iso_edge_time("2026-06-30T24:00:00Z")
    Timestamp('2026-07-01 00:00:00+0000', tz='UTC')
    >>> iso_edge_time("2016-12-31T23:59:60")
    Timestamp('2016-12-31 23:59:59.999999999')
    """
    match = _EDGE_TIME.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        return None
    day, midnight, hour, _, zone = match.groups()
    try:
        if midnight:
            ts = pd.Timestamp(f"{day}T00:00:00{zone or ''}") + pd.Timedelta(days=1)
        else:
            ts = pd.Timestamp(f"{day}T{hour}:59:59.999999999{zone or ''}")
    except ValueError:  # a day or an hour out of range
        return None
    return ts


def _parse_event(event: dict, min_ts: pd.Timestamp, max_ts: pd.Timestamp) -> tuple:
    fields = {}
    for key, val in event.items():
        name = FIELD_ALIASES.get(key)
        if name is None:
            raise ValueError(f"unknown field: {key!r}")
        if name in fields:
            raise ValueError(f"duplicate field: {name!r} given twice")
        fields[name] = val
    missing = [name for name in READING_COLUMNS if name not in fields]
    if missing:
        raise ValueError(f"missing field: {', '.join(missing)}")
    if not isinstance(fields["ts"], str) or not fields["ts"][:4].isdigit():  # not "now", not epoch numbers
        raise ValueError(f"bad ts: {str(fields['ts'])[:70]!r} is not an ISO-8601 time")
    try:
        ts = pd.Timestamp(fields["ts"])
    except (ValueError, TypeError) as exc:
        ts = iso_edge_time(fields["ts"])
        if ts is None:
            raise ValueError(f"bad ts: {fields['ts']!r} is not an ISO-8601 time") from exc
    if ts is pd.NaT:
        raise ValueError("bad ts: empty")
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    if not min_ts <= ts <= max_ts:
        raise ValueError(f"ts out of range: {ts.isoformat()} is outside {min_ts.isoformat()} .. {max_ts.isoformat()}")
    value = fields["value"]
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"bad value: {value!r} is not a number")
    try:
        value = float(value)
    except ValueError as exc:
        raise ValueError(f"bad value: {value!r} is not a number") from exc
    if not math.isfinite(value):
        raise ValueError(f"bad value: {value!r} is not finite")
    try:
        device = _canonical_id(fields["device"])
    except ValueError as exc:
        raise ValueError(f"bad device: {exc}") from None
    try:
        sensor = _canonical_id(fields["sensor"])
    except ValueError as exc:
        raise ValueError(f"bad sensor: {exc}") from None
    return ts, device, sensor, value


def parse_bodies_rowwise(bodies, min_ts: pd.Timestamp, max_ts: pd.Timestamp) -> tuple[list, list, list]:
    """The reference parser, one event at a time: (rows, index of each row's body, rejections)."""
    rows, accepted, rejected = [], [], []
    for i, body in enumerate(bodies):
        text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
        try:
            if len(text) > MAX_EVENT_BYTES:
                raise ValueError(f"oversized: event is {len(text)} bytes, more than {MAX_EVENT_BYTES}")
            try:
                event = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ValueError(f"malformed JSON: {exc.msg} at position {exc.pos}") from None
            if not isinstance(event, dict):
                raise ValueError("not an object: event is not a JSON object")
            rows.append(_parse_event(event, min_ts, max_ts))
            accepted.append(i)
        except ValueError as exc:
            rejected.append((text[:MAX_EVENT_BYTES], str(exc)))
        except (OverflowError, RecursionError) as exc:  # a huge number, or deeply nested JSON
            rejected.append((text[:MAX_EVENT_BYTES], f"malformed JSON: {type(exc).__name__}"))
    return rows, accepted, rejected


_COLUMNAR_MIN_EVENTS = 1000  # below this, joining the bodies costs more than it saves


def parse_event_bodies(
    bodies: list[bytes | str],
    *,
    now: pd.Timestamp | None = None,
    max_age: pd.Timedelta = pd.Timedelta(days=3650),
    max_ahead: pd.Timedelta = pd.Timedelta(hours=1),
) -> ParsedBatch:
    """Parse JSON event bodies into canonical readings; reject each bad one with its reason.

    Large batches are joined into newline-delimited bytes and parsed in columns by
    :func:`scoring.event_lines.parse_event_lines`; the result is the same as the row-wise
    reference, :func:`parse_event_bodies_rowwise`, gives (tests compare them).

    Parameters
    ----------
    bodies : list of bytes or str
        One JSON object per event, as devices send them.
    now : Timestamp, optional
        The reference time for the future/past bounds (default: the current UTC time).
    max_age, max_ahead : Timedelta
        Readings older than ``now - max_age`` or later than ``now + max_ahead`` are rejected.

    Returns
    -------
    ParsedBatch
        Accepted readings in event order, and the rejected bodies with a reason each.
    """
    now = now if now is not None else pd.Timestamp.now("UTC").tz_localize(None)
    if len(bodies) >= _COLUMNAR_MIN_EVENTS:
        data = _joined(bodies)
        # A body holding a newline would become two lines, a blank one none: the count tells.
        if data is not None and data.count(b"\n") == len(bodies) - 1:
            from scoring.event_lines import parse_event_lines

            parsed = parse_event_lines(data, now=now, max_age=max_age, max_ahead=max_ahead)
            if len(parsed.readings) + len(parsed.rejected) == len(bodies):
                return parsed
    return parse_event_bodies_rowwise(bodies, now=now, max_age=max_age, max_ahead=max_ahead)


def _joined(bodies: list[bytes | str]) -> bytes | None:
    """The bodies as newline-delimited UTF-8, or None when they do not join as they are."""
    try:
        if all(isinstance(body, str) for body in bodies):
            return "\n".join(bodies).encode("utf-8")
        if all(isinstance(body, bytes) for body in bodies):
            return b"\n".join(bodies)
    except UnicodeEncodeError:  # a lone surrogate: the row-wise parser reads it as it is
        pass
    return None


def parse_event_bodies_rowwise(
    bodies: list[bytes | str],
    *,
    now: pd.Timestamp | None = None,
    max_age: pd.Timedelta = pd.Timedelta(days=3650),
    max_ahead: pd.Timedelta = pd.Timedelta(hours=1),
) -> ParsedBatch:
    """The reference parser: :func:`parse_event_bodies` one event at a time with ``json.loads``."""
    now = now if now is not None else pd.Timestamp.now("UTC").tz_localize(None)
    rows, _, rejected = parse_bodies_rowwise(bodies, now - max_age, now + max_ahead)
    return ParsedBatch(readings_frame(rows), pd.DataFrame(rejected, columns=["body", "reason"]))


def readings_frame(rows: list[tuple]) -> pd.DataFrame:
    """Canonical readings from ``(ts, device, sensor, value)`` tuples."""
    if not rows:
        return empty_readings()
    return pd.DataFrame(rows, columns=READING_COLUMNS).astype({"ts": "datetime64[ns]", "value": "float64"})


def readings_to_event_bodies(readings: pd.DataFrame) -> list[str]:
    """Serialize canonical readings as the JSON bodies devices send."""
    ts = pd.to_datetime(readings["ts"]).dt.strftime("%Y-%m-%dT%H:%M:%S.%f").str[:-3]
    values = readings["value"].astype(float).to_numpy()
    return [
        json.dumps({"ts": t, "device": d, "sensor": s, "value": v})
        for t, d, s, v in zip(ts, readings["device"].astype(str), readings["sensor"].astype(str), values)
    ]


def read_readings_file(path) -> list[str]:
    """Read a CSV (long or wide) or JSON-lines file of readings as event bodies.

    The whole file in one list: for tests and small files. ``bscore ingest`` streams files
    through :mod:`scoring.event_chunks` instead. Raises ``ValueError`` naming the file, the
    line and what is wrong.
    """
    from scoring.event_chunks import iter_event_chunks
    from scoring.input_files import IdMapping, inspect_file

    layout = inspect_file(path)
    return [body for chunk in iter_event_chunks(path, layout, IdMapping()) for body in chunk.bodies]


def drop_duplicate_readings(readings: pd.DataFrame) -> pd.DataFrame:
    """Keep the first reading of each (device, sensor, ts): a sensor reads once per instant."""
    return readings.drop_duplicates(subset=["device", "sensor", "ts"], keep="first").reset_index(drop=True)
