"""A block of a file becomes event bodies in columns.

CSV: the bodies equal what ``json.dumps`` writes (but for value cells that are JSON numbers,
written as numbers), and Arrow's CSV reading equals pandas'. JSON-lines: a block of plainly good
events lands as it is, its ids still checked; any other block goes line by line.
"""

import json

import pandas as pd
import pytest

from scoring.event_chunks import _arrow_csv, _json_chunk, _pandas_csv, json_payload
from scoring.input_files import IdMapping, InputError, inspect_file
from scoring.readings import parse_event_bodies_rowwise

NOW = pd.Timestamp("2026-06-01T12:00")
CELLS = [
    ("2026-06-01T10:00:05", "7", "1", "12.5"),
    ("2026-06-01T10:00:05", "7", "2", "-0"),  # the float -0.0: stays a string
    ("2026-06-01T10:00:05", "7", "3", "1e3"),
    ("2026-06-01T10:00:05", "7", "4", "013"),  # not a JSON number: a string, parsed as 13 by the drain
    ("2026-06-01T10:00:05", "7", "5", "hot"),
    ('2026-06-01T10:00:05"', "7", "6", "1"),  # a quote to escape
    ("2026-06-01T10:00:05", "dev\\ice", "7", "1"),  # a backslash
    ("2026-06-01T10:00:05", "7", "Température", "2.5"),  # non-ASCII
    ("2026-06-01T10:00:05", "7", "9", "NaN"),
]


def rows(cells):
    return [pd.Series(column, dtype=str) for column in zip(*cells)]


@pytest.mark.parametrize("cells", [CELLS[:1] + CELLS[2:3], CELLS], ids=["plain", "hostile"])
def test_bodies_read_as_json_dumps_bodies_read(cells):
    payload = json_payload(*rows(cells))
    bodies = payload.decode("utf-8").split("\n")[:-1]
    assert len(bodies) == len(cells)
    ours = parse_event_bodies_rowwise(bodies, now=NOW)
    theirs = parse_event_bodies_rowwise([json.dumps(dict(zip(("ts", "device", "sensor", "value"), c)))
                                         for c in cells], now=NOW)
    pd.testing.assert_frame_equal(ours.readings, theirs.readings)
    assert list(ours.rejected["reason"]) == list(theirs.rejected["reason"])


def test_numbers_go_in_as_numbers_and_the_rest_as_json_dumps_writes_it():
    payload = json_payload(*rows(CELLS)).decode("utf-8").split("\n")[:-1]
    assert payload[0] == '{"ts": "2026-06-01T10:00:05", "device": "7", "sensor": "1", "value": 12.5}'
    assert payload[1].endswith('"value": "-0"}') and payload[3].endswith('"value": "013"}')
    assert payload[2].endswith('"value": 1e3}')
    assert json.loads(payload[5])["ts"] == '2026-06-01T10:00:05"'
    assert json.loads(payload[6])["device"] == "dev\\ice"
    assert payload[7] == json.dumps({"ts": "2026-06-01T10:00:05", "device": "7", "sensor": "Température"})[:-1] \
        + ', "value": 2.5}'


def test_arrow_reads_a_block_as_pandas_does(tmp_path):
    path = tmp_path / "long.csv"
    text = ('ts;device;sensor;value\r\n2026-06-01T10:00:05;"pump; 7";"a ""b""";12,5\r\n'
            '2026-06-01T10:00:10; 7 ;s;\r\n')
    path.write_bytes(text.encode())
    layout = inspect_file(path)
    data = b"\n".join(text.encode().split(b"\n")[1:-1])
    arrow = _arrow_csv(data, layout)
    pandas = _pandas_csv(path, layout, data, [2, 3])
    assert arrow is not None
    arrow = arrow.to_pandas()
    arrow.columns = arrow.columns.astype(int)
    pd.testing.assert_frame_equal(arrow, pandas, check_dtype=False)


def test_a_row_arrow_cannot_read_falls_back_to_pandas_naming_the_line(tmp_path):
    path = tmp_path / "long.csv"
    path.write_text("ts,device,sensor,value\n2026-06-01T10:00:05,7,1,1\n2026-06-01T10:00:05,7,1,1,9\n")
    layout = inspect_file(path)
    data = b"2026-06-01T10:00:05,7,1,1\n2026-06-01T10:00:05,7,1,1,9"
    assert _arrow_csv(data, layout) is None
    with pytest.raises(ValueError, match=r"line 3.*5 fields where the header has 4"):
        _pandas_csv(path, layout, data, [2, 3])


def good_line(sensor: str) -> bytes:
    return json.dumps({"ts": "2026-06-01T10:00:05", "device": "7", "sensor": sensor, "value": 1.5}).encode()


def test_a_block_of_plain_json_events_lands_as_it_is_with_its_ids_checked():
    block = good_line("1") + b"\n" + good_line("2") + b"\n"
    chunk = _json_chunk("f.jsonl", 5, block, IdMapping(), now=NOW)
    assert (chunk.payload, chunk.events) == (block, 2)
    assert chunk.verdict[1].empty  # judged as it was parsed: the check does not parse it again
    with pytest.raises(InputError, match=r"f.jsonl, line 6: name 'Flow_Rate' is also the id of 'Flow Rate'"):
        _json_chunk("f.jsonl", 5, good_line("1") + b"\n" + good_line("Flow_Rate") + b"\n",
                    IdMapping(known={"Flow Rate": "Flow_Rate"}), now=NOW)


def test_a_block_with_names_to_map_goes_line_by_line():
    chunk = _json_chunk("f.jsonl", 1, good_line("Flow Rate") + b"\n\n" + good_line("1") + b"\n", IdMapping(), now=NOW)
    assert chunk.lines.tolist() == [1, 3] and json.loads(chunk.bodies[0])["sensor"] == "Flow_Rate"
