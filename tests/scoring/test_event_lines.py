"""The columnar JSON-lines parser against the row-wise reference, on hostile input.

``parse_event_lines(data)`` must give exactly what the row-wise ``parse_event_bodies_rowwise``
gives for the buffer's non-blank lines, and ``parse_event_bodies`` (columnar for large
batches) what it gives for the same bodies: the same accepted table (values, order, dtypes) and the same
rejected bodies with the same reasons.
"""

import json

import numpy as np
import pandas as pd
import pytest

from scoring.event_lines import _fast_readings, _lines, parse_event_lines
from scoring.readings import parse_event_bodies, parse_event_bodies_rowwise
from tests.reliability.test_bad_input import BAD_EVENTS
from tests.scoring.test_readings import NOW

GOOD = {"ts": "2026-06-01T10:00:00", "device": "1", "sensor": "1", "value": 1.0}


def event(**fields) -> str:
    return json.dumps({**GOOD, **fields}, ensure_ascii=False)


def raw(ts='"2026-06-01T10:00:00"', device='"1"', sensor='"1"', value="1.0") -> str:
    return '{"ts": %s, "device": %s, "sensor": %s, "value": %s}' % (ts, device, sensor, value)


HOSTILE = [
    # from tests/scoring/test_readings.py
    json.dumps({"ts": "2026-06-01T10:00:05Z", "device": "1", "sensor": "2", "value": 10.5}),
    json.dumps({"TS": "2026-06-01 10:00:05", "Device": 1, "Tag": 2, "Value": "10.5"}),
    json.dumps({"TS": "2026-06-01T10:00:05", "Device": "1", "Sensor": "2", "Value": 10.5}),
    '{"ts": "2026-06-01T10:00:00", "device": "1", "sensor": "1", "value": 1',
    '{"ts": "2026-06-01T10:00:00", "device": "1", "value": 1}',
    raw(value='"abc"'), raw(value="NaN"), raw(value="Infinity"), raw(value="-Infinity"),
    raw(ts='"2099-01-01T00:00:00"'), raw(ts='"1990-01-01T00:00:00"'), raw(ts='"yesterday"'), raw(ts='"now"'),
    '{"ts": "2026-06-01T10:00:00", "device": "1", "sensor": "1", "value": 1, "x": 2}',
    raw(device="true"), "[1, 2]", raw(device='"../x"'), raw(device='"a/b"'), raw(device="[1, 2]"),
    raw(value="1" + "0" * 400), "[" * 2000 + "]" * 2000, event(pad="x" * 5000),
    # duplicate keys, aliases in every position and order
    '{"ts": "2026-06-01T10:00:00", "ts": "2026-06-01T10:00:01", "device": "1", "sensor": "1", "value": 1}',
    '{"ts": "2026-06-01T10:00:00", "TS": "2026-06-01T10:00:01", "device": "1", "sensor": "1", "value": 1}',
    '{"ts": "2026-06-01T10:00:00", "device": "1", "sensor": "1", "value": 1, "Val": 2}',
    '{"timestamp": "2026-06-01T10:00:00", "Device": "1", "tag": "1", "Val": 1}',
    '{"value": 1, "sensor": "1", "device": "1", "ts": "2026-06-01T10:00:00"}',
    '{"TS": "2026-06-01T10:00:00", "Device": "1", "Sensor": "1", "Value": 2.5}',
    # numbers as strings, ids as numbers, bools, nesting
    raw(value='"1.5"'), raw(value='" 1.5 "'), raw(value='"1_0"'), raw(value='"nan"'), raw(value='"-0"'),
    raw(value='"1e400"'), raw(value="true"), raw(value="null"), raw(value='{"a": 1}'), raw(value="[1]"),
    raw(device="1"), raw(device="0"), raw(device="-1"), raw(device="007"), raw(device="1e2"), raw(device="1.0"),
    raw(device="1.5"), raw(device="null"), raw(device='{"id": 1}'), raw(sensor="2"), raw(sensor="false"),
    raw(device='" 1 "'), raw(device='""'), raw(device='"' + "d" * 64 + '"'), raw(device='"' + "d" * 65 + '"'),
    raw(device='"a:b.c-d_e"'), raw(device='"_a"'),
    # huge, tiny and signed numbers
    raw(value="1e400"), raw(value="-1e400"), raw(value="1e308"), raw(value="1e-400"), raw(value="-0"),
    raw(value="-0.0"), raw(value="0"), raw(value="-0e0"), raw(value="1E5"), raw(value="1e+05"),
    raw(value="12345678901234567890123"), raw(value="0.1000000000000000055511151231257827"),
    raw(value="01"), raw(value="1."), raw(value=".5"), raw(value="+1"), raw(value="0x10"),
    # unicode, escapes, U+2028/U+2029 inside strings, control characters
    event(device="é"), event(sensor="温度"), raw(device='"\\u0031"'), event(device="a\u2028b"),
    event(sensor="a\u2029b"), raw(device='"1"\u2028'), "\u2028" + raw(), raw() + "\u2029", raw(device='"a\tb"'),
    raw(device='"\\n"'), raw().replace(" ", "\t"), raw().replace(" ", ""), "  " + raw() + "  ",
    raw() + "\r", raw() + " x", "\ufeff" + raw(), "\x00", "\x1c" + raw(),
    # blank lines and whitespace
    "", " ", "\t", "\r", "\u2028", "\u00a0",
    # oversized, and exactly at the limit
    event(pad="x" * 4000), raw(device='"' + "1" * 64 + '"') + " " * (4096 - len(raw(device='"' + "1" * 64 + '"'))),
    raw(device='"' + "1" * 64 + '"') + " " * (4097 - len(raw(device='"' + "1" * 64 + '"'))),
    event(pad="é" * 2100),
    # time zones, calendars, fractions, far past and future
    raw(ts='"2026-06-01T10:00:00+00:00"'), raw(ts='"2026-06-01T12:00:00+02:00"'), raw(ts='"2026-06-01T05:00:00-05:00"'),
    raw(ts='"2026-06-01T10:00:00z"'), raw(ts='"2026-06-01t10:00:00"'), raw(ts='"2026-06-01 10:00:00Z"'),
    raw(ts='"2026-06-01T10:00:00.5Z"'), raw(ts='"2026-06-01T10:00:00.123456789"'),
    raw(ts='"2026-06-01T10:00:00.1234567891"'), raw(ts='"2026-06-01T10:00:00.000"'), raw(ts='"2026-06-01T10:00"'),
    raw(ts='"2026-06-01"'), raw(ts='"2026-02-30T10:00:00"'), raw(ts='"2026-02-29T10:00:00"'),
    raw(ts='"2024-02-29T10:00:00"'), raw(ts='"2026-04-31T10:00:00"'), raw(ts='"2026-06-01T24:00:00"'),
    raw(ts='"2026-06-01T23:59:60"'), raw(ts='"2026-13-01T10:00:00"'), raw(ts='"0001-01-01T00:00:00"'),
    raw(ts='"9999-12-31T23:59:59"'), raw(ts='"1677-09-21T00:12:43"'), raw(ts='"2262-04-11T23:47:16"'),
    raw(ts='"2016-06-02T12:00:00"'), raw(ts='"2016-06-01T12:00:00"'), raw(ts='"2026-06-01T13:00:00"'),
    raw(ts='"2026-06-01T13:00:00.000000001"'), raw(ts="1717236000"), raw(ts='"20260601T100000"'),
    *BAD_EVENTS.values(),
]


def reference(data: bytes):
    lines = [line for line in data.decode("utf-8", errors="replace").split("\n") if line.strip()]
    return parse_event_bodies_rowwise(lines, now=NOW)


def assert_same(data: bytes):
    expected, got = reference(data), parse_event_lines(data, now=NOW)
    pd.testing.assert_frame_equal(got.readings, expected.readings, check_exact=True)
    assert np.array_equal(np.signbit(got.readings["value"]), np.signbit(expected.readings["value"]))
    pd.testing.assert_frame_equal(got.rejected, expected.rejected, check_exact=True)
    return got


@pytest.mark.parametrize("line", HOSTILE, ids=range(len(HOSTILE)))
def test_each_hostile_line_among_good_ones(line):
    data = "\n".join([raw(), line, raw(device='"2"')]).encode("utf-8")
    assert_same(data)


def test_all_hostile_lines_in_one_buffer():
    got = assert_same(("\n".join(HOSTILE) + "\n").encode("utf-8"))
    assert len(got.readings) > 20 and len(got.rejected) > 50  # both paths are exercised


@pytest.mark.parametrize("data", [
    b"", b"\n", b"\n\n  \n", raw().encode(), b"\xef\xbb\xbf" + raw().encode(), raw().encode() + b"\r\n",
    (raw() + "\r\n" + raw(device='"2"') + "\r\n").encode(), b'{"ts": "\xff\xfe", "device": "1"}\n' + raw().encode(),
    raw(device='"\xff"').encode("latin-1"), raw().encode() + b"\n\x80\n" + raw().encode(),
])
def test_buffers_edges(data):
    assert_same(data)


def test_random_numbers_and_times_parse_exactly():
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(0, 1, 300), rng.normal(0, 1e6, 300), rng.uniform(-1e-5, 1e-5, 300),
                             np.round(rng.uniform(0, 200, 300), 4), 10.0 ** rng.integers(-99, 99, 100)])
    texts = [repr(float(v)) for v in values] + [f"{v:.17g}" for v in values[:300]] + [f"{v:.3e}" for v in values[:300]]
    nanos = rng.integers(0, 10 ** 9, len(texts))
    seconds = pd.Timestamp("2026-05-01") + pd.to_timedelta(rng.integers(0, 31 * 86400, len(texts)), unit="s")
    stamps = []
    for i, (second, nano) in enumerate(zip(seconds, nanos)):
        digits = f"{nano:09d}"[: 1 + i % 9]
        zone = ["", "Z", "+00:00"][i % 3]
        sep = "T" if i % 2 else " "
        stamps.append(f"{second:%Y-%m-%d}{sep}{second:%H:%M:%S}" + (f".{digits}" if i % 4 else "") + zone)
    lines = [raw(ts=json.dumps(ts), device=json.dumps(str(i % 97)), value=text)
             for i, (ts, text) in enumerate(zip(stamps, texts))]
    data = ("\n".join(lines) + "\n").encode()
    got = assert_same(data)
    assert len(got.readings) == len(lines)
    _, columnar = _fast_readings(_lines(data), NOW - pd.Timedelta(days=100), NOW)
    assert columnar.mean() > 0.9


def test_canonical_events_take_the_columnar_path_whole():
    lines = [raw(ts=f'"2026-06-01T10:00:{i % 60:02d}.{i:03d}"', device=f'"{i}"', value=str(i / 7)) for i in range(1000)]
    data = "\n".join(lines).encode()
    got = assert_same(data)
    assert len(got.readings) == 1000 and got.rejected.empty
    _, columnar = _fast_readings(_lines(data), NOW - pd.Timedelta(days=1), NOW)
    assert columnar.all()  # no line needed the row-wise parser


def test_lines_parsed_in_parallel_slices_give_the_same_result(monkeypatch):
    import scoring.event_lines

    monkeypatch.setattr(scoring.event_lines, "_SLICE_LINES", 7)  # many threads, each on a few lines
    assert_same(("\n".join(HOSTILE * 3) + "\n").encode("utf-8"))


@pytest.mark.parametrize("extra", [[], ["a\nb", raw()], ["", "  "], ["\u00a0"], [b"bytes"]])
def test_event_bodies_parse_as_the_row_wise_reference(extra):
    bodies = HOSTILE * 8 + extra + [raw(device=f'"{i}"') for i in range(200)]
    expected, got = parse_event_bodies_rowwise(bodies, now=NOW), parse_event_bodies(bodies, now=NOW)
    pd.testing.assert_frame_equal(got.readings, expected.readings, check_exact=True)
    pd.testing.assert_frame_equal(got.rejected, expected.rejected, check_exact=True)


def test_bytes_bodies_parse_as_the_row_wise_reference():
    bodies = [line.encode("utf-8", errors="surrogatepass") for line in HOSTILE * 8] + [b'{"ts": "\xff"}']
    expected, got = parse_event_bodies_rowwise(bodies, now=NOW), parse_event_bodies(bodies, now=NOW)
    pd.testing.assert_frame_equal(got.readings, expected.readings, check_exact=True)
    pd.testing.assert_frame_equal(got.rejected, expected.rejected, check_exact=True)
