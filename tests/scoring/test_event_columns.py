"""Events judged from their cells get the verdicts the drain's parser gives their lines."""

import itertools

import pandas as pd
import pyarrow as pa
import pytest

from scoring.event_chunks import _json_lines
from scoring.event_columns import judge_event_columns
from scoring.event_lines import parse_event_lines_table

NOW = pd.Timestamp("2026-06-01T12:00")
TIMES = ["2026-06-01T10:00:05", "2026-06-01T10:00:05", "2026-06-01 10:00:06.25", "2026-06-01T10:00:07Z",
         "2026-06-01T10:00:08+00:00", "2026-06-01T10:00:09+01:00", "2026-02-30T10:00:00", "2016-12-31T23:59:60",
         "2026-06-01T24:00:00", "2026-06-01T13:30:00", "2010-01-01T00:00:00", "1600-01-01T00:00:00",
         "2026-06-01T10:00:05.123456789", "2026-6-1T10:00:05", "yesterday", ""]
IDS = ["7", "pump-7.a:b_c", "", "x" * 65, "-7", "Flow Rate"]
VALUES = ["12.5", "-0", "-0.0", "0.0", "1e3", "1E+02", "013", "NaN", "inf", "1e400", "123456789012345678901234567",
          "hot", "", "-", "1.", "5" * 5000]


def judged_both_ways(ts, device, sensor, value):
    columns = [pa.array(column, pa.string()) for column in (ts, device, sensor, value)]
    payload, (lines, numeric) = _json_lines(*columns)
    earliest, rejected = judge_event_columns(lines, *columns, numeric, now=NOW)
    readings, expected = parse_event_lines_table(payload, now=NOW)
    expected_earliest = pd.Timestamp(readings["ts"].to_pandas().min()) if readings.num_rows else None
    return (earliest, list(zip(rejected["body"], rejected["reason"]))), \
        (expected_earliest, list(zip(expected["body"], expected["reason"])))


@pytest.mark.parametrize("field", ["ts", "device", "sensor", "value"])
def test_every_hostile_cell_gets_the_parsers_verdict(field):
    cells = {"ts": TIMES, "device": IDS, "sensor": IDS, "value": VALUES}[field]
    plain = {"ts": "2026-06-01T10:00:05", "device": "7", "sensor": "1", "value": "1.5"}
    columns = {name: [cell if name == field else plain[name] for cell in cells] for name in plain}
    ours, parsers = judged_both_ways(columns["ts"], columns["device"], columns["sensor"], columns["value"])
    assert ours == parsers
    assert parsers[1], "the cells hold refused ones"


def test_mixed_rows_keep_line_order_and_the_earliest_time():
    rows = list(itertools.islice(itertools.product(TIMES, IDS[:3], IDS[:2], VALUES[:8]), 0, None, 7))
    ours, parsers = judged_both_ways(*map(list, zip(*rows)))
    assert ours == parsers and parsers[0] is not None
