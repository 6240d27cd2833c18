"""Reading bscore's SQL tables without Dagster: one reader per table, typed by the table's definition.

The Dagster resource (``resources.sql.SqlStore``) and the Azure ML scoring job
(``scoring.shard_sql``) read through the same functions. Each column's type comes from the
table (``arrow_type``), the one ``resources.sql`` defines or, where that module (and Dagster)
is not installed, the same table reflected from the database it created. SQLite files and
PostgreSQL are read through ADBC into Arrow columns (no Python object per row or value);
other dialects (Azure SQL) through SQLAlchemy.
"""

from __future__ import annotations

import threading

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

SENSOR_VALUES = "sensor_values"
PREDICTIONS = "predictions"
DEVICE_VERDICTS = "device_verdicts"


def arrow_type(column: sa.Column) -> pa.DataType:
    """The Arrow type a column is read as; one the readers do not know raises ``TypeError``
    naming the column."""
    kind = column.type
    if isinstance(kind, sa.Boolean):
        return pa.bool_()
    if isinstance(kind, sa.Integer):
        return pa.int64()
    if isinstance(kind, (sa.Float, sa.Numeric)):
        return pa.float64()
    if isinstance(kind, sa.DateTime):
        return pa.timestamp("ns")
    if isinstance(kind, sa.String):
        return pa.string()
    raise TypeError(f"column {column.table.name}.{column.name} has type {kind!r}, which bscore does not read")


def literal_sql(statement, dialect) -> str:
    """A statement as SQL text with its values inlined (timestamps and ids bscore made itself),
    for drivers outside SQLAlchemy."""
    return str(statement.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))


def sqlite_file(engine: sa.Engine) -> str | None:
    """The database file of a file-backed SQLite engine (ADBC opens it too), else None."""
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return database


def adbc_connect(engine: sa.Engine):
    """An ADBC connection to the engine's database (SQLite file or PostgreSQL), or None."""
    path = sqlite_file(engine)
    if path is not None:
        import adbc_driver_sqlite.dbapi as adbc_sqlite

        conn = adbc_sqlite.connect(path)
        with conn.cursor() as cursor:
            cursor.execute("PRAGMA busy_timeout = 60000")  # a concurrent replace waits for the write lock
        return conn
    if engine.dialect.name == "postgresql":
        import adbc_driver_postgresql.dbapi as adbc_postgresql

        return adbc_postgresql.connect(engine.url.set(drivername="postgresql").render_as_string(hide_password=False))
    return None


def sqlalchemy_error(statement: str, exc: Exception) -> sa.exc.DBAPIError:
    """An ADBC error as the SQLAlchemy exception the same failure raises through SQLAlchemy
    (callers and retries look for IntegrityError and OperationalError)."""
    import adbc_driver_manager.dbapi as adbc

    if isinstance(exc, adbc.IntegrityError) or "constraint failed" in str(exc):
        return sa.exc.IntegrityError(statement, None, exc)
    if isinstance(exc, adbc.ProgrammingError):
        return sa.exc.ProgrammingError(statement, None, exc)
    return sa.exc.OperationalError(statement, None, exc)


def _read_arrow(engine: sa.Engine, query) -> pa.Table | None:
    """Run a select through ADBC into Arrow columns; None where ADBC does not serve the dialect."""
    import adbc_driver_manager.dbapi as adbc

    statement = literal_sql(query, engine.dialect)
    try:
        conn = adbc_connect(engine)
        if conn is None:
            return None
        try:
            with conn.cursor() as cursor:
                cursor.execute(statement)
                return cursor.fetch_arrow_table()
        finally:
            conn.close()
    except adbc.Error as exc:
        raise sqlalchemy_error(statement, exc) from exc


def _typed(values, wanted: pa.DataType) -> pa.Array | pa.ChunkedArray:
    """A column as the type its definition gives (SQLite returns text timestamps and integer
    booleans; SQLAlchemy returns Python objects)."""
    if not isinstance(values, (pa.Array, pa.ChunkedArray)):
        if pa.types.is_timestamp(wanted):
            values = pd.to_datetime(pd.Series(values, dtype=object), format="ISO8601")
            return pa.array(values.to_numpy(dtype="datetime64[ns]"), wanted)
        return pa.array(values, wanted)
    if values.type == wanted:
        return values
    return pc.cast(values, wanted)  # SQLite's text timestamps too: Arrow parses them as a column


def read_table(engine: sa.Engine, table: sa.Table, start=None, end=None, devices=None, sensors=None) -> pd.DataFrame:
    """Rows of windows ending in ``(start, end]`` (the hours ``[start, end)``), optionally of some
    devices and sensors, sorted by device, sensor and ts, ``ts`` first, each column typed by
    ``arrow_type`` (a nullable integer column with nulls reads as float, as pandas keeps them)."""
    t = table.c
    conditions = []
    if start is not None:
        conditions.append(t.ts > start)
    if end is not None:
        conditions.append(t.ts <= end)
    if devices is not None:
        conditions.append(t.device.in_(list(devices)))
    if sensors is not None:
        conditions.append(t.sensor.in_(list(sensors)))
    order = [t[name] for name in ("device", "sensor", "ts") if name in t]
    names = ["ts"] + [column.name for column in table.columns if column.name != "ts"]
    query = sa.select(*(t[name] for name in names)).where(*conditions).order_by(*order)
    data = _read_arrow(engine, query)
    if data is not None:
        columns = {name: data[name] for name in names}
    else:
        with engine.connect() as conn:
            rows = conn.execute(query).all()
        columns = {name: [row[i] for row in rows] for i, name in enumerate(names)}
    typed = {name: _typed(columns[name], arrow_type(t[name])) for name in names}
    return pa.table(typed).to_pandas()


_reflected: dict[tuple[str, str], sa.Table] = {}
_reflected_lock = threading.Lock()


def reflected_table(engine: sa.Engine, name: str) -> sa.Table:
    """Table ``name`` as the database defines it (read once per database and process): how a
    reader without ``resources.sql`` sees the table that module created."""
    key = (engine.url.render_as_string(hide_password=False), name)
    with _reflected_lock:
        if key not in _reflected:
            _reflected[key] = sa.Table(name, sa.MetaData(), autoload_with=engine)
        return _reflected[key]


def read_sensor_values(engine: sa.Engine, start=None, end=None, devices=None, sensors=None,
                       table: sa.Table | None = None) -> pd.DataFrame:
    """Windows of the hours ``[start, end)``, optionally of some devices and sensors:
    ``ts, device, sensor, value, readings`` (and any newer columns), sorted by device, sensor, ts.
    ``table`` is the table's definition, reflected from the database when not given."""
    return read_table(engine, table if table is not None else reflected_table(engine, SENSOR_VALUES),
                      start, end, devices, sensors)


def read_predictions(engine: sa.Engine, start=None, end=None, devices=None, sensors=None,
                     table: sa.Table | None = None) -> pd.DataFrame:
    """Predictions of the hours ``[start, end)``: ``ts, device, sensor, value, score, is_anomaly,
    model_version``, sorted by device, sensor, ts."""
    return read_table(engine, table if table is not None else reflected_table(engine, PREDICTIONS),
                      start, end, devices, sensors)


def read_device_verdicts(engine: sa.Engine, start=None, end=None, devices=None,
                         table: sa.Table | None = None) -> pd.DataFrame:
    """Device verdicts of the hours ``[start, end)``, sorted by device and ts: ``ts, device,
    is_anomaly, sensors_scored, sensors_flagged, flagged_sensors, method, score, contributions``."""
    return read_table(engine, table if table is not None else reflected_table(engine, DEVICE_VERDICTS),
                      start, end, devices)
