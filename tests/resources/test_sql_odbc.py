"""Azure SQL through pyodbc: the module imports (Debian's unixODBC), and a host without
Microsoft's driver gets the driver manager's own error, named clearly by bscore."""

import re

import pytest

from resources.sql import SqlStore

PASSWORD = "n0t-for-logs"


def test_pyodbc_imports_with_the_driver_manager():
    import pyodbc

    assert re.match(r"\d+\.\d+", pyodbc.version)
    # The ODBC driver manager answers (an empty list without Microsoft's driver, but no error).
    assert isinstance(pyodbc.drivers(), list)


@pytest.mark.parametrize("query, driver", [
    ("driver=ODBC+Driver+18+for+SQL+Server&Encrypt=yes", "ODBC Driver 18 for SQL Server"),
    ("driver=No+Such+Driver", "No Such Driver"),
])
def test_missing_odbc_driver_is_named_with_the_driver_managers_own_error(query, driver):
    import pyodbc

    if driver in pyodbc.drivers():
        pytest.skip(f"{driver} is installed on this host")
    store = SqlStore(url=f"mssql+pyodbc://bscore:{PASSWORD}@127.0.0.1:1/bscore?{query}")
    with pytest.raises(RuntimeError) as failure:
        store.engine
    message = str(failure.value)
    assert message.startswith(f"ODBC driver '{driver}' is not installed on this host: install msodbcsql18")
    # unixODBC's own words, so the cause is not bscore's guess.
    assert f"[unixODBC][Driver Manager]Can't open lib '{driver}' : file not found" in message
    assert PASSWORD not in message and failure.value.__cause__ is None
