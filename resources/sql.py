"""The SQL store: window aggregates and predictions, through SQLAlchemy 2.

SQLite by default; PostgreSQL (``postgresql+psycopg``) and Azure SQL (``mssql+pyodbc``) with
the same code. Both tables have primary keys, and every write replaces the rows of the hours
(and sensors) it covers in one transaction, so a re-run never duplicates a row and a crash
leaves the old rows or the new ones. Bulk inserts take each dialect's fast path: COPY on
PostgreSQL, ``fast_executemany`` on pyodbc, one executemany elsewhere.
"""

from __future__ import annotations

import re
import threading
from datetime import datetime

import dagster as dg
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects import mssql

metadata = sa.MetaData()

# DATETIME on SQL Server rounds to 1/300 s; DATETIME2 keeps the microseconds the others keep.
Timestamp = sa.DateTime().with_variant(mssql.DATETIME2(), "mssql")

sensor_values = sa.Table(
    "sensor_values",
    metadata,
    sa.Column("device", sa.String(64), primary_key=True),
    sa.Column("sensor", sa.String(64), primary_key=True),
    sa.Column("ts", Timestamp, primary_key=True),
    sa.Column("value", sa.Float, nullable=False),
    sa.Column("readings", sa.Integer, nullable=False),
)

predictions = sa.Table(
    "predictions",
    metadata,
    sa.Column("device", sa.String(64), primary_key=True),
    sa.Column("sensor", sa.String(64), primary_key=True),
    sa.Column("ts", Timestamp, primary_key=True),
    sa.Column("value", sa.Float, nullable=False),
    sa.Column("score", sa.Float, nullable=False),
    sa.Column("is_anomaly", sa.Boolean, nullable=False),
    sa.Column("model_version", sa.String(64), nullable=False),
)

_engines: dict[str, sa.Engine] = {}
_engines_lock = threading.Lock()

# psycopg binary COPY types, in each table's column order.
_COPY_TYPES = {"device": "varchar", "sensor": "varchar", "ts": "timestamp", "value": "float8",
               "readings": "int4", "score": "float8", "is_anomaly": "bool", "model_version": "varchar"}


def engine_options(url: str) -> dict:
    """``create_engine`` keyword arguments for the URL's dialect and driver.

    Parameters
    ----------
    url : str
        SQLAlchemy database URL.

    Returns
    -------
    dict
        ``fast_executemany=True`` for ``mssql+pyodbc`` (one round trip per batch of rows
        instead of one per row), nothing extra otherwise.
    """
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "mssql" and parsed.get_driver_name() == "pyodbc":
        return {"fast_executemany": True}
    if parsed.get_backend_name() == "sqlite":
        return {"connect_args": {"timeout": 60}}  # a concurrent replace waits for the write lock
    return {}


def missing_odbc_driver(error: Exception, url: str) -> str | None:
    """A clear message when the ODBC driver manager cannot find the URL's driver, else None.

    unixODBC reports it as "Can't open lib '<driver>' : file not found" (or, with no driver
    named, "Data source name not found"); the fix is installing Microsoft's driver, not
    anything in bscore.
    """
    text = str(getattr(error, "orig", None) or error)
    if "Can't open lib" not in text and "IM002" not in text:
        return None
    # Only the driver's name is shown: other query values of the URL may hold a password.
    driver = sa.make_url(url).query.get("driver") or "(none named in BSCORE_SQL_URL)"
    said = re.sub(r"^\('[0-9A-Z]+', \"|\"\)$", "", text)
    return (f"ODBC driver {driver!r} is not installed on this host: install msodbcsql18 (Microsoft's "
            f"ODBC Driver 18 for SQL Server, see README 'SQL'); the ODBC driver manager said: {said}")


def lock_table_for_replace(conn: sa.Connection, table: sa.Table) -> None:
    """Make concurrent replaces of ``table`` take turns until the transaction ends.

    Under READ COMMITTED a second replace's DELETE does not see the first one's uncommitted
    rows and its INSERT then breaks the primary key; an exclusive transaction-scoped lock
    serializes them. SQLite serializes writers itself.
    """
    name = f"bscore.{table.name}"
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:name))"), {"name": name})
    elif conn.dialect.name == "mssql":
        conn.execute(sa.text("EXEC sp_getapplock @Resource = :name, @LockMode = 'Exclusive', "
                             "@LockOwner = 'Transaction'"), {"name": name})


def ensure_schema(engine: sa.Engine) -> None:
    """Create missing tables; fail clearly when an existing one lacks columns or keys."""
    metadata.create_all(engine)
    inspector = sa.inspect(engine)
    for table in metadata.sorted_tables:
        present = {column["name"] for column in inspector.get_columns(table.name)}
        missing = [column.name for column in table.columns if column.name not in present]
        keys = inspector.get_pk_constraint(table.name)["constrained_columns"]
        wanted = [column.name for column in table.primary_key.columns]
        if missing or sorted(keys) != sorted(wanted):
            raise RuntimeError(f"table {table.name} does not match bscore's schema (missing columns {missing}, "
                               f"primary key {keys} instead of {wanted}); rename it or drop it to let bscore create it")


def _values(frame: pd.DataFrame, name: str) -> list:
    """A column as Python values (``datetime`` for ``ts``)."""
    if name == "ts":
        return pd.to_datetime(frame[name]).dt.to_pydatetime().tolist()
    return frame[name].tolist()


def _rows(frame: pd.DataFrame, columns: list[str]) -> list[tuple]:
    """Rows as tuples of Python values, in ``columns`` order."""
    return list(zip(*(_values(frame, name) for name in columns)))


def _copy_rows(conn: sa.Connection, table: sa.Table, columns: list[str], rows: list[tuple]) -> None:
    """COPY rows into ``table`` on the transaction's own psycopg connection."""
    quote = conn.dialect.identifier_preparer.quote
    statement = f"COPY {quote(table.name)} ({', '.join(quote(c) for c in columns)}) FROM STDIN (FORMAT BINARY)"
    try:
        with conn.connection.driver_connection.cursor() as cursor, cursor.copy(statement) as copy:
            copy.set_types([_COPY_TYPES[c] for c in columns])
            for row in rows:
                copy.write_row(row)
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


def bulk_insert(conn: sa.Connection, table: sa.Table, frame: pd.DataFrame) -> None:
    """Insert every row of ``frame`` into ``table`` inside ``conn``'s transaction."""
    columns = [column.name for column in table.columns]
    if conn.dialect.name == "postgresql" and conn.dialect.driver == "psycopg":
        _copy_rows(conn, table, columns, _rows(frame, columns))
    elif conn.dialect.positional:
        _executemany_rows(conn, table, frame)
    else:
        conn.execute(table.insert(), [dict(zip(columns, row)) for row in _rows(frame, columns)])


def _rows_outside(frame: pd.DataFrame, start, end, sensors=None) -> int:
    """How many rows have ``ts`` outside ``(start, end]`` or a sensor not in ``sensors``."""
    if not len(frame):
        return 0
    ts = pd.to_datetime(frame["ts"])
    inside = (ts > pd.Timestamp(start)) & (ts <= pd.Timestamp(end))
    if sensors is not None:
        inside &= frame["sensor"].isin(list(sensors))
    return int((~inside).sum())


class SqlStore(dg.ConfigurableResource):
    """Aggregates (``sensor_values``) and predictions (``predictions``) in a SQL database."""

    url: str

    @property
    def engine(self) -> sa.Engine:
        with _engines_lock:
            engine = _engines.get(self.url)
            if engine is None:
                engine = sa.create_engine(self.url, pool_pre_ping=True, **engine_options(self.url))
                try:
                    ensure_schema(engine)  # the first connection
                except sa.exc.DBAPIError as exc:
                    missing = missing_odbc_driver(exc, self.url)
                    if missing is None:
                        raise
                    raise RuntimeError(missing) from None
                _engines[self.url] = engine
            return engine

    def describe(self) -> str:
        """The URL for people: the password, and query values that may hold one, masked."""
        url = sa.make_url(self.url)
        secret_keys = {"password", "pwd", "odbc_connect"}
        url = url.set(query={k: ("***" if k.lower() in secret_keys else v) for k, v in url.query.items()})
        return url.render_as_string(hide_password=True)

    def _replace(self, table: sa.Table, frame: pd.DataFrame, where, outside: int) -> None:
        if outside:
            raise ValueError(f"{outside} of {len(frame)} rows for {table.name} lie outside "
                             "the hours (and sensors) being replaced")
        with self.engine.begin() as conn:
            lock_table_for_replace(conn, table)
            conn.execute(table.delete().where(where))
            if len(frame):
                bulk_insert(conn, table, frame)

    def replace_sensor_values(self, frame: pd.DataFrame, start: datetime, end: datetime) -> None:
        """Replace the windows of the hours ``[start, end)`` (window ends in ``(start, end]``)."""
        t = sensor_values.c
        self._replace(sensor_values, frame, sa.and_(t.ts > start, t.ts <= end), _rows_outside(frame, start, end))

    def replace_predictions(self, frame: pd.DataFrame, start: datetime, end: datetime, sensors: list[str]) -> None:
        """Replace the predictions of ``sensors`` for the hours ``[start, end)``."""
        t = predictions.c
        where = sa.and_(t.ts > start, t.ts <= end, t.sensor.in_(sensors))
        self._replace(predictions, frame, where, _rows_outside(frame, start, end, sensors))

    def _read(self, table: sa.Table, start, end, devices=None, sensors=None) -> pd.DataFrame:
        t = table.c
        # SQLite keeps timestamps as text, and SQLAlchemy would parse each one in Python:
        # fetch the text and let pandas parse the column at once.
        as_text = self.engine.dialect.name == "sqlite"
        columns = [sa.type_coerce(c, sa.String).label(c.name) if as_text and c.name == "ts" else c
                   for c in table.columns]
        query = sa.select(*columns)
        if start is not None:
            query = query.where(t.ts > start)
        if end is not None:
            query = query.where(t.ts <= end)
        if devices is not None:
            query = query.where(t.device.in_(list(devices)))
        if sensors is not None:
            query = query.where(t.sensor.in_(list(sensors)))
        query = query.order_by(t.device, t.sensor, t.ts)
        with self.engine.connect() as conn:
            rows = conn.execute(query).tuples().all()
        names = [c.name for c in table.columns]
        frame = pd.DataFrame(dict(zip(names, zip(*rows))) if rows else {name: [] for name in names})
        frame["ts"] = pd.to_datetime(frame["ts"], format="ISO8601").astype("datetime64[ns]")
        return frame[["ts"] + [c for c in frame.columns if c != "ts"]]

    def read_sensor_values(self, start=None, end=None, devices=None, sensors=None) -> pd.DataFrame:
        """Windows of the hours ``[start, end)``, optionally of some devices and sensors."""
        frame = self._read(sensor_values, start, end, devices, sensors)
        return frame.astype({"value": "float64", "readings": "int64"})

    def read_predictions(self, start=None, end=None, devices=None, sensors=None) -> pd.DataFrame:
        frame = self._read(predictions, start, end, devices, sensors)
        return frame.astype({"value": "float64", "score": "float64", "is_anomaly": "bool"})

    def window_stats(self, start: datetime, end: datetime) -> tuple[int, int]:
        """``(windows, readings)`` stored for the hours ``[start, end)``: how many windows, and the
        sum of their reading counts (to reconcile with the raw readings they came from)."""
        t = sensor_values.c
        query = sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(t.readings), 0)).where(t.ts > start, t.ts <= end)
        with self.engine.connect() as conn:
            windows, readings = conn.execute(query).one()
        return int(windows), int(readings)

    def duplicate_windows(self, start: datetime, end: datetime) -> int:
        """How many (device, sensor, ts) keys occur more than once in the hours (a PK breach)."""
        t = sensor_values.c
        dupes = (
            sa.select(t.device, t.sensor, t.ts)
            .where(t.ts > start, t.ts <= end)
            .group_by(t.device, t.sensor, t.ts)
            .having(sa.func.count() > 1)
            .subquery()
        )
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(dupes)).scalar_one())

    def latest_window(self):
        """The end of the newest stored window, or None when there is none."""
        with self.engine.connect() as conn:
            latest = conn.execute(sa.select(sa.func.max(sensor_values.c.ts))).scalar_one()
        return None if latest is None else pd.Timestamp(latest)

    def distinct(self, column: str) -> list[str]:
        """Distinct devices or sensors that have windows."""
        col = sensor_values.c[column]
        with self.engine.connect() as conn:
            return sorted(row[0] for row in conn.execute(sa.select(col).distinct()))

    # Predictions written by scoring shards (see the staging tables below).

    def devices_with_windows(self, start: datetime, end: datetime, sensors: list[str]) -> list[str]:
        """Devices with windows of ``sensors`` in the hours ``[start, end)``: one DISTINCT query,
        all a scoring run needs to plan its shards."""
        t = sensor_values.c
        query = (sa.select(t.device).where(t.ts > start, t.ts <= end, t.sensor.in_(list(sensors)))
                 .distinct().order_by(t.device))
        with self.engine.connect() as conn:
            return [row[0] for row in conn.execute(query)]

    def replace_device_predictions(self, frame: pd.DataFrame, start: datetime, end: datetime,
                                   sensors: list[str], devices: list[str]) -> None:
        """Replace the predictions of ``devices`` x ``sensors`` for the hours ``[start, end)``, in one
        transaction; other devices' rows stay."""
        _replace_devices(self.engine, predictions, frame, start, end, sensors, devices)

    def create_prediction_staging(self, name: str) -> None:
        """Create the run's staging table (same columns and key as ``predictions``)."""
        _staging_table(name).create(self.engine, checkfirst=True)

    def stage_predictions(self, name: str, frame: pd.DataFrame, start: datetime, end: datetime,
                          sensors: list[str], devices: list[str]) -> None:
        """A shard's predictions of one hour into the staging table ``name``, replacing that shard's
        devices' rows (a retried shard replaces what its first attempt wrote)."""
        _replace_devices(self.engine, _staging_table(name), frame, start, end, sensors, devices)

    def publish_staged_predictions(self, name: str, start: datetime, end: datetime, sensors: list[str]) -> int:
        """Replace the predictions of ``sensors`` for the hours ``[start, end)`` by what is staged in
        ``name``, in one transaction, inside the database; returns the rows published."""
        staging, t = _staging_table(name), predictions.c
        s = staging.c
        columns = [c.name for c in predictions.columns]
        with self.engine.begin() as conn:
            lock_table_for_replace(conn, predictions)
            conn.execute(predictions.delete().where(t.ts > start, t.ts <= end, t.sensor.in_(list(sensors))))
            where = (s.ts > start, s.ts <= end, s.sensor.in_(list(sensors)))
            conn.execute(predictions.insert().from_select(columns, sa.select(*(s[c] for c in columns)).where(*where)))
            # Counted rather than taken from rowcount, which some drivers leave at -1 for INSERT ... SELECT.
            return int(conn.execute(sa.select(sa.func.count()).select_from(staging).where(*where)).scalar_one())

    def drop_prediction_staging(self, name: str) -> None:
        _staging_table(name).drop(self.engine, checkfirst=True)

    def drop_stale_prediction_staging(self, now=None) -> list[str]:
        """Drop staging tables older than ``STAGING_MAX_AGE`` (left by killed runs); returns their names."""
        now = pd.Timestamp.now(tz="UTC").tz_localize(None) if now is None else pd.Timestamp(now)
        stale = []
        for name in sa.inspect(self.engine).get_table_names():
            match = _STAGING_NAME.match(name)
            if match and pd.to_datetime(match.group(1), format="%Y%m%d%H%M%S") < now - STAGING_MAX_AGE:
                self.drop_prediction_staging(name)
                stale.append(name)
        return stale


# Scoring shards write their predictions to a staging table of the run's own, and the run
# publishes each hour from it in one transaction once every shard succeeded: shards write in
# parallel, yet an hour in ``predictions`` is one run's whole hour or the previous one.
# Names (and their check) are shared with the dagster-free job side, scoring.shard_sql.
from scoring.shard_sql import STAGING_NAME as _STAGING_NAME  # noqa: E402
from scoring.shard_sql import check_staging_name, staging_table_name  # noqa: E402,F401

STAGING_MAX_AGE = pd.Timedelta(days=1)


def _staging_table(name: str) -> sa.Table:
    return predictions.to_metadata(sa.MetaData(), name=check_staging_name(name))


def _check_rows_within(table: sa.Table, frame: pd.DataFrame, start, end, sensors, devices) -> None:
    if not len(frame):
        return
    ts = pd.to_datetime(frame["ts"])
    inside = ((ts > pd.Timestamp(start)) & (ts <= pd.Timestamp(end)) & frame["sensor"].astype(str).isin(list(sensors))
              & frame["device"].astype(str).isin(list(devices)))
    if not inside.all():
        raise ValueError(f"{int((~inside).sum())} of {len(frame)} rows for {table.name} lie outside "
                         "the hours, sensors and devices being replaced")


def _replace_devices(engine: sa.Engine, table: sa.Table, frame: pd.DataFrame, start, end, sensors, devices) -> None:
    """Replace the rows of ``devices`` x ``sensors`` in the hours ``[start, end)`` in one transaction."""
    _check_rows_within(table, frame, start, end, sensors, devices)
    t = table.c
    with engine.begin() as conn:
        if table is predictions:  # a staging table's shards write disjoint devices: no turns needed
            lock_table_for_replace(conn, table)
        conn.execute(table.delete().where(t.ts > start, t.ts <= end, t.sensor.in_(list(sensors)),
                                          t.device.in_(list(devices))))
        if len(frame):
            bulk_insert(conn, table, frame[[c.name for c in predictions.columns]])
