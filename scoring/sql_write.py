"""Bulk inserts of columns into bscore's tables inside a caller's transaction, without Dagster.

Shared by the SQL store (``resources.sql``) and the Azure ML scoring job, which stages its own
predictions (``scoring.shard_sql``): a COPY of CSV that pyarrow writes on PostgreSQL (psycopg),
one DBAPI executemany of positional rows elsewhere (``fast_executemany`` on pyodbc), never a
Python dict per row.
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import sqlalchemy as sa


def _values(frame: pd.DataFrame, name: str) -> list:
    """A column as Python values (``datetime`` for ``ts``, ``None`` for a missing optional value)."""
    if name in ("ts", "staged_at"):
        return pd.to_datetime(frame[name]).dt.to_pydatetime().tolist()
    if name in _OPTIONAL_COLUMNS:
        return [None if pd.isna(v) else v for v in frame[name].tolist()]
    return frame[name].tolist()


def _rows(frame: pd.DataFrame, columns: list[str]) -> list[tuple]:
    """Rows as tuples of Python values, in ``columns`` order."""
    return list(zip(*(_values(frame, name) for name in columns)))


# Arrow types of each column as bscore's tables hold them (timestamps naive UTC, microseconds).
_ARROW_TYPES = {"device": pa.string(), "sensor": pa.string(), "ts": pa.timestamp("us"), "value": pa.float64(),
                "readings": pa.int64(), "score": pa.float64(), "is_anomaly": pa.bool_(),
                "model_version": pa.string(), "sensors_scored": pa.int64(), "sensors_flagged": pa.int64(),
                "flagged_sensors": pa.string(), "method": pa.string(), "contributions": pa.string(),
                "low": pa.float64(), "high": pa.float64(), "run": pa.string(), "staged_at": pa.timestamp("us")}
# Columns a writer may leave out (older callers, Stream Analytics before it wrote them): NULL.
_OPTIONAL_COLUMNS = ("low", "high")
# How SQLAlchemy's SQLite dialect stores DateTime: text that sorts as time does.
SQLITE_TS_FORMAT = "%Y-%m-%d %H:%M:%S"  # on microsecond timestamps Arrow appends ".ffffff"


def _missing_optional(frame: pd.DataFrame | pa.Table, columns: list[str]) -> set[str]:
    """The optional ``columns`` that ``frame`` lacks (written as NULL)."""
    present = frame.column_names if isinstance(frame, pa.Table) else frame.columns
    return {name for name in _OPTIONAL_COLUMNS if name in columns and name not in present}


def arrow_table(frame: pd.DataFrame | pa.Table, columns: list[str]) -> pa.Table:
    """``frame``'s columns as Arrow, in ``columns`` order, timestamps cut to microseconds as the
    databases keep them."""
    missing = _missing_optional(frame, columns)
    if isinstance(frame, pa.Table):
        return pa.table([pa.nulls(len(frame), _ARROW_TYPES[name]) if name in missing
                         else pc.cast(frame[name], _ARROW_TYPES[name], safe=False) for name in columns], names=columns)
    arrays = []
    for name in columns:
        if name in missing:
            arrays.append(pa.nulls(len(frame), _ARROW_TYPES[name]))
            continue
        values = frame[name]
        if name == "ts":
            ns = pd.to_datetime(values).to_numpy(dtype="datetime64[ns]")
            arrays.append(pa.array(ns.astype("datetime64[us]")))
        elif name == "is_anomaly":
            arrays.append(pa.array(np.asarray(values, dtype=bool)))
        else:
            arrays.append(pa.array(values, type=_ARROW_TYPES[name], from_pandas=True))
    return pa.table(arrays, names=columns)


def sqlite_ts_text(ts: pa.ChunkedArray) -> pa.Array:
    """Timestamps as SQLAlchemy's SQLite text; an hour's rows share few distinct times, and
    formatting each distinct one once is many times faster than formatting every row."""
    encoded = pc.dictionary_encode(ts.combine_chunks())
    return pc.strftime(encoded.dictionary, SQLITE_TS_FORMAT).take(encoded.indices)


def _copy_rows(conn: sa.Connection, table: sa.Table, columns: list[str], frame: pd.DataFrame | pa.Table) -> None:
    """COPY ``frame`` into ``table`` on the transaction's own psycopg connection, as CSV that
    pyarrow writes in columns (no Python object per row or value)."""
    quote = conn.dialect.identifier_preparer.quote
    statement = f"COPY {quote(table.name)} ({', '.join(quote(c) for c in columns)}) FROM STDIN (FORMAT CSV)"
    buffer = io.BytesIO()
    pacsv.write_csv(arrow_table(frame, columns), buffer, pacsv.WriteOptions(include_header=False))
    try:
        with conn.connection.driver_connection.cursor() as cursor, cursor.copy(statement) as copy:
            view, chunk = buffer.getbuffer(), 8 << 20
            for start in range(0, len(view), chunk):
                copy.write(view[start : start + chunk])
            del view
    except conn.dialect.loaded_dbapi.Error as exc:
        # The same exception types (IntegrityError, ...) as SQLAlchemy's own statements raise.
        raise sa.exc.DBAPIError.instance(statement, None, exc, conn.dialect.loaded_dbapi.Error) from exc


def _executemany_rows(conn: sa.Connection, table: sa.Table, frame: pd.DataFrame) -> None:
    """One DBAPI executemany of positional rows, converted by SQLAlchemy's own bind processors.

    Per-row dicts through ``conn.execute(insert, [...])`` cost several times the driver's own
    work; converting column by column keeps the stored format SQLAlchemy reads back.
    """
    dialect = conn.dialect
    columns = []
    for column in table.columns:
        values = _values(frame, column.name)
        process = column.type.dialect_impl(dialect).bind_processor(dialect)
        columns.append([process(v) for v in values] if process else values)
    statement = str(table.insert().compile(dialect=dialect))
    conn.exec_driver_sql(statement, list(zip(*columns)))


def bulk_insert(conn: sa.Connection, table: sa.Table, frame: pd.DataFrame | pa.Table) -> None:
    """Insert every row of ``frame`` (pandas or Arrow) into ``table`` inside ``conn``'s transaction."""
    columns = [column.name for column in table.columns]
    if conn.dialect.name == "postgresql" and conn.dialect.driver == "psycopg":
        _copy_rows(conn, table, columns, frame)
        return
    if isinstance(frame, pa.Table):
        frame = frame.to_pandas()
    missing = _missing_optional(frame, columns)
    if missing:
        frame = frame.assign(**dict.fromkeys(missing, np.nan))
    if conn.dialect.positional:
        _executemany_rows(conn, table, frame)
    else:
        conn.execute(table.insert(), [dict(zip(columns, row)) for row in _rows(frame, columns)])
