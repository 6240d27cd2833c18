"""Make text safe to keep in a CSV file that people open in a spreadsheet (CSV injection).

A cell starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is run as a
formula by Excel, LibreOffice and Google Sheets (``=HYPERLINK(...)`` leaks data on a click).
As OWASP recommends, such a cell is written with a leading ``'``, which spreadsheets show as
text; a cell already starting with ``'`` gets one more, so that :func:`restore_cell` gives
back the exact text. Used for free-text names (``id_mapping.csv``), not for ids or numbers.
"""

FORMULA_LEADS = ("=", "+", "-", "@", "\t", "\r")


def neutralize_cell(text: str) -> str:
    """``text`` as a cell no spreadsheet runs as a formula.

    >>> neutralize_cell('=HYPERLINK("http://x")')
    '\\'=HYPERLINK("http://x")'
    """
    return "'" + text if text.startswith((*FORMULA_LEADS, "'")) else text


def restore_cell(cell: str) -> str:
    """The text a :func:`neutralize_cell` cell was made from."""
    return cell[1:] if cell.startswith("'") else cell
