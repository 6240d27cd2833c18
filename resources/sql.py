"""The SQL store: window aggregates, predictions and device verdicts, through SQLAlchemy 2.

SQLite by default; PostgreSQL (``postgresql+psycopg``) and Azure SQL (``mssql+pyodbc``) with
the same code. Every table has a primary key, and every write replaces the rows of the hours
(and sensors) it covers in one transaction, so a re-run never duplicates a row and a crash
leaves the old rows or the new ones. Bulk paths move columns, not Python rows: on a SQLite
file the replace runs on an ADBC connection (delete, then ``adbc_ingest`` per batch, one transaction;
timestamps stored as the text SQLAlchemy writes); on PostgreSQL a COPY of CSV that pyarrow
writes, inside SQLAlchemy's transaction and its table lock; ``fast_executemany`` on pyodbc.
Reads go through ``scoring.sql_read`` (one reader per table, shared with the Azure ML job).
"""

from __future__ import annotations

import fcntl
import re
import threading
from collections.abc import Iterable
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import dagster as dg
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa
from sqlalchemy.dialects import mssql
from sqlalchemy.ext.compiler import compiles

from scoring.entra_sql import create_sql_engine
from scoring.sql_write import arrow_table, bulk_insert, sqlite_ts_text  # noqa: F401 (bulk_insert: benches)

from scoring.sql_read import (
    adbc_connect,
    literal_sql,
    read_device_verdicts,
    read_predictions,
    read_sensor_values,
    sqlalchemy_error,
    sqlite_file,
)

metadata = sa.MetaData()

# DATETIME on SQL Server rounds to 1/300 s; DATETIME2 keeps the microseconds the others keep.
Timestamp = sa.DateTime().with_variant(mssql.DATETIME2(), "mssql")
# SQL Server's TEXT is deprecated (and compiled as such before a connection says the version).
LongText = sa.Text().with_variant(mssql.VARCHAR("max"), "mssql")

# Keys lead with ts, so an hour's read, replace and counts seek to that hour's rows whatever the
# history holds (resources/sql_layout.py migrates older databases): clustered on SQL Server, the
# table itself on SQLite (WITHOUT ROWID), a plain B-tree on PostgreSQL.
TIME_LEADING = {"sqlite_with_rowid": False}


def time_leading_key(*columns: str) -> sa.PrimaryKeyConstraint:
    return sa.PrimaryKeyConstraint(*columns, mssql_clustered=True)


sensor_values = sa.Table(
    "sensor_values",
    metadata,
    sa.Column("device", sa.String(64), nullable=False),
    sa.Column("sensor", sa.String(64), nullable=False),
    sa.Column("ts", Timestamp, nullable=False),
    sa.Column("value", sa.Float, nullable=False),
    sa.Column("readings", sa.Integer, nullable=False),
    # The window's smallest and largest reading (a mean dilutes a one-reading spike); NULL in
    # windows stored before they were recorded.
    sa.Column("low", sa.Float, nullable=True),
    sa.Column("high", sa.Float, nullable=True),
    time_leading_key("ts", "device", "sensor"),
    **TIME_LEADING,
)

# Stream Analytics writes sensor_values at least once: a restarted job re-delivers windows already
# written, and with its output error policy Stop a duplicate key would stop the job. On SQL Server
# the key ignores such a row instead (a warning, not an error); bscore's own writes delete first.
sa.PrimaryKeyConstraint.argument_for("mssql", "ignore_dup_key", False)
sensor_values.primary_key.dialect_kwargs["mssql_ignore_dup_key"] = True


@compiles(sa.PrimaryKeyConstraint, "mssql")
def _primary_key_with_options(constraint, compiler, **kw):
    ddl = compiler.visit_primary_key_constraint(constraint, **kw)
    if ddl and constraint.dialect_options["mssql"]["ignore_dup_key"]:
        ddl += " WITH (IGNORE_DUP_KEY = ON)"
    return ddl


# Every (device, sensor) that has had windows: kept by each replace of sensor_values, so that the
# fleet's series are read without scanning a table keyed by time (resources/sql_layout.py fills
# it once for an older database). Stream Analytics writes sensor_values itself: with it, readers
# take the pairs from sensor_values (bscore_assets/ingestion/fleet.py).
sensor_series = sa.Table(
    "sensor_series",
    metadata,
    sa.Column("device", sa.String(64), nullable=False),
    sa.Column("sensor", sa.String(64), nullable=False),
    sa.PrimaryKeyConstraint("device", "sensor", mssql_clustered=True),
    sqlite_with_rowid=False,
)


def record_series(start, end):
    """The statement adding the (device, sensor) pairs with windows in ``(start, end]`` that
    ``sensor_series`` lacks (run in the replace's transaction, after its inserts)."""
    v, known = sensor_values.c, sensor_series.c
    new = (sa.select(v.device, v.sensor).where(v.ts > start, v.ts <= end)
           .where(~sa.exists().where(known.device == v.device, known.sensor == v.sensor)).distinct())
    return sensor_series.insert().from_select(["device", "sensor"], new)


predictions = sa.Table(
    "predictions",
    metadata,
    sa.Column("device", sa.String(64), nullable=False),
    sa.Column("sensor", sa.String(64), nullable=False),
    sa.Column("ts", Timestamp, nullable=False),
    sa.Column("value", sa.Float, nullable=False),
    sa.Column("score", sa.Float, nullable=False),
    sa.Column("is_anomaly", sa.Boolean, nullable=False),
    sa.Column("model_version", sa.String(64), nullable=False),
    time_leading_key("ts", "device", "sensor"),
    **TIME_LEADING,
)

# Predictions an Azure ML shard job wrote itself, under its run's token, until the run publishes
# the hour: one INSERT ... SELECT into predictions and a DELETE of the run's rows, in the run's
# transaction on the server (SqlStore.publish_staged_predictions), so no row passes through the
# run's process and the hour is still one run's whole hour or the previous one. ``staged_at``
# lets a later publish drop the rows of a run whose host died before publishing or cleaning up.
prediction_staging = sa.Table(
    "prediction_staging",
    metadata,
    sa.Column("run", sa.String(32), nullable=False),
    *(sa.Column(column.name, column.type, nullable=column.nullable) for column in predictions.columns),
    sa.Column("staged_at", Timestamp, nullable=False),
    sa.PrimaryKeyConstraint("run", "ts", "device", "sensor", mssql_clustered=True),
    sqlite_with_rowid=False,
)
STALE_STAGING = pd.Timedelta(days=2)  # far past a job's timeout and a run's publishing

# One vote per device window over its sensors' predictions (``scoring.verdicts``); the flagged
# sensors' ids, comma-separated, can outgrow any fixed width as devices gain sensors.
device_verdicts = sa.Table(
    "device_verdicts",
    metadata,
    sa.Column("device", sa.String(64), nullable=False),
    sa.Column("ts", Timestamp, nullable=False),
    sa.Column("is_anomaly", sa.Boolean, nullable=False),
    sa.Column("sensors_scored", sa.Integer, nullable=False),
    sa.Column("sensors_flagged", sa.Integer, nullable=False),
    sa.Column("flagged_sensors", LongText, nullable=False),
    # How the verdict was reached (vote or multivariate), its score and each sensor's share:
    # nullable, so ensure_schema adds them to a database from before them.
    sa.Column("method", sa.String(16), nullable=True),
    sa.Column("score", sa.Float, nullable=True),
    sa.Column("contributions", LongText, nullable=True),
    time_leading_key("ts", "device"),
    **TIME_LEADING,
)

_engines: dict[tuple[str, str], sa.Engine] = {}
_engines_lock = threading.Lock()


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
            f"ODBC Driver 18 for SQL Server, see docs/azure.md, 'SQL'); the ODBC driver manager said: {said}")


LOCK_TIMEOUT_SECONDS = 120


class TableLockTimeout(TimeoutError):
    """Another writer held a table's replace lock too long; retrying later is safe."""


def validate_sql_url(url: str, variable: str = "BSCORE_SQL_URL") -> sa.URL:
    """Parse a SQLAlchemy URL, refusing one whose password would be misread.

    An unencoded ``@`` in the password makes the text after it part of the host name, which
    then shows in messages and logs; the error names the variable, never the URL.
    """
    try:
        parsed = sa.make_url(url)
    except (sa.exc.ArgumentError, ValueError):
        raise ValueError(f"{variable} is not a database URL such as postgresql+psycopg://user:password@host:5432/db "
                         "(special characters in the user or password must be URL-encoded)") from None
    if parsed.host and any(c in parsed.host for c in "@/ "):
        raise ValueError(f"{variable}: the host part holds '@', so the password has an unencoded '@' (or ':' "
                         "'/' '?' '#'); URL-encode the password, e.g. with "
                         "python -c 'import urllib.parse,getpass; print(urllib.parse.quote(getpass.getpass(), safe=\"\"))'")
    return parsed


def lock_table_for_replace(conn: sa.Connection, table: sa.Table, timeout_seconds: float = LOCK_TIMEOUT_SECONDS) -> None:
    """Make concurrent replaces of ``table`` take turns until the transaction ends.

    Under READ COMMITTED a second replace's DELETE does not see the first one's uncommitted
    rows and its INSERT then breaks the primary key; an exclusive transaction-scoped lock
    serializes them. SQLite serializes writers itself (with its busy timeout). A lock held
    longer than ``timeout_seconds`` raises :class:`TableLockTimeout` naming the table, which
    the assets retry as an outage.
    """
    name = f"bscore.{table.name}"
    busy = TableLockTimeout(f"table {table.name} is locked by another bscore writer for more than "
                            f"{timeout_seconds:g}s; retry when it has finished")
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text(f"SET LOCAL lock_timeout = '{int(timeout_seconds * 1000)}ms'"))
        try:
            with conn.begin_nested():
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:name))"), {"name": name})
        except sa.exc.OperationalError as exc:
            if getattr(exc.orig, "sqlstate", None) == "55P03":  # lock_not_available
                raise busy from None
            raise
        conn.execute(sa.text("SET LOCAL lock_timeout TO DEFAULT"))
    elif conn.dialect.name == "mssql":
        result = conn.execute(sa.text("DECLARE @r int; EXEC @r = sp_getapplock @Resource = :name, "
                                      "@LockMode = 'Exclusive', @LockOwner = 'Transaction', @LockTimeout = :ms; "
                                      "SELECT @r"), {"name": name, "ms": int(timeout_seconds * 1000)}).scalar()
        if result is not None and result < 0:
            raise busy


@contextmanager
def _schema_lock(engine: sa.Engine):
    """Serialize schema creation between processes: an advisory lock on PostgreSQL, an
    application lock on SQL Server, a file lock beside a SQLite file."""
    if engine.dialect.name == "sqlite":
        database = engine.url.database
        if not database or database == ":memory:":
            yield
            return
        path = Path(f"{database}.schema-lock")
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
        return
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_lock(hashtext('bscore.schema'))"))
        elif engine.dialect.name == "mssql":
            conn.execute(sa.text("EXEC sp_getapplock @Resource = 'bscore.schema', @LockMode = 'Exclusive', "
                                 "@LockOwner = 'Session'"))
        conn.commit()
        try:
            yield
        finally:
            if engine.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_unlock(hashtext('bscore.schema'))"))
            elif engine.dialect.name == "mssql":
                conn.execute(sa.text("EXEC sp_releaseapplock @Resource = 'bscore.schema', @LockOwner = 'Session'"))
            conn.commit()


def ensure_schema(engine: sa.Engine) -> None:
    """Create missing tables; fail clearly when an existing one lacks columns or keys.

    Safe when several processes start at once on a fresh database: they take turns under a
    lock, and one that still finds its CREATE beaten by another re-inspects and goes on.
    """
    from resources.sql_layout import migrate_to_time_leading_keys

    with _schema_lock(engine):
        migrate_to_time_leading_keys(engine)
        try:
            metadata.create_all(engine)
        except (sa.exc.IntegrityError, sa.exc.ProgrammingError, sa.exc.OperationalError):
            metadata.create_all(engine)  # created meanwhile by a process outside the lock
        add_missing_columns(engine)
    inspector = sa.inspect(engine)
    for table in metadata.sorted_tables:
        present = {column["name"] for column in inspector.get_columns(table.name)}
        missing = [column.name for column in table.columns if column.name not in present]
        keys = inspector.get_pk_constraint(table.name)["constrained_columns"]
        wanted = [column.name for column in table.primary_key.columns]
        if missing or keys != wanted:
            raise RuntimeError(f"table {table.name} does not match bscore's schema (missing columns {missing}, "
                               f"primary key {keys} instead of {wanted}); rename it or drop it to let bscore create it")


def add_missing_columns(engine: sa.Engine, tables: sa.MetaData = metadata) -> list[str]:
    """Add, in place, the nullable columns a newer bscore defines and an older database lacks.

    Existing rows get NULL, which every reader takes as "not recorded" (a newer column is
    always nullable and outside the key); a missing key or NOT NULL column is not added here
    and still fails ``ensure_schema``. Returns ``table.column`` for each column added.
    """
    inspector = sa.inspect(engine)
    existing = set(inspector.get_table_names())
    added = []
    with engine.begin() as conn:
        for table in tables.sorted_tables:
            if table.name not in existing:
                continue
            present = {column["name"] for column in inspector.get_columns(table.name)}
            for column in table.columns:
                if column.name in present or not column.nullable or column.primary_key:
                    continue
                kind = column.type.compile(dialect=engine.dialect)
                table_name = engine.dialect.identifier_preparer.quote(table.name)
                column_name = engine.dialect.identifier_preparer.quote(column.name)
                conn.execute(sa.text(f"ALTER TABLE {table_name} ADD {column_name} {kind} NULL"))
                added.append(f"{table.name}.{column.name}")
    return added



def _rows_outside(data: pa.Table, start, end, sensors=None) -> int:
    """How many rows (``ts`` in microseconds, as :func:`arrow_table` gives) have ``ts`` outside
    ``(start, end]`` or a sensor not in ``sensors``."""
    if not len(data):
        return 0
    us = pc.cast(data["ts"], pa.int64()).to_numpy()
    inside = (us > pd.Timestamp(start).value // 1000) & (us <= pd.Timestamp(end).value // 1000)
    if sensors is not None:
        inside &= pc.is_in(data["sensor"], value_set=pa.array(list(sensors), pa.string())).to_numpy(
            zero_copy_only=False)
    return int((~inside).sum())


def _replace_sqlite(engine: sa.Engine, table: sa.Table, batches: Iterable[pa.Table], delete, then=None) -> int:
    """Delete, then bulk insert each batch (ADBC ingest), then run ``then`` if given, in one SQLite
    transaction, timestamps stored as the text SQLAlchemy writes and reads; returns the rows inserted."""
    import adbc_driver_manager.dbapi as adbc

    statement = literal_sql(delete, engine.dialect)
    try:
        conn = adbc_connect(engine)
        try:
            with conn.cursor() as cursor:
                cursor.execute(statement)
                rows = 0
                for data in batches:
                    data = data.set_column(data.schema.get_field_index("ts"), "ts", sqlite_ts_text(data["ts"]))
                    cursor.adbc_ingest(table.name, data, mode="append")
                    rows += len(data)
                if then is not None:
                    cursor.execute(literal_sql(then, engine.dialect))
            conn.commit()
            return rows
        except BaseException:  # an error, or the batches' producer stopped: nothing of this replace stays
            conn.rollback()
            raise
        finally:
            conn.close()
    except adbc.Error as exc:
        raise sqlalchemy_error(statement, exc) from exc


def _checked_batches(table: sa.Table, batches, start, end, sensors=None):
    """The non-empty batches as Arrow in the table's columns, sorted by its key; a batch with rows
    outside the hours (and sensors) being replaced raises ValueError."""
    columns = [column.name for column in table.columns]
    key = [(column.name, "ascending") for column in table.primary_key.columns]
    for batch in batches:
        if not len(batch):
            continue
        data = arrow_table(batch, columns)
        outside = _rows_outside(data, start, end, sensors)
        if outside:
            raise ValueError(f"{outside} of {len(data)} rows for {table.name} lie outside "
                             "the hours (and sensors) being replaced")
        # Rows in key order append to the clustered B-tree's end instead of splitting its pages.
        yield data.take(pc.sort_indices(data, sort_keys=key))


def _utc_now() -> datetime:
    """Now, as the naive UTC times bscore's tables hold."""
    return pd.Timestamp.now(tz="UTC").tz_localize(None).to_pydatetime()


class SqlStore(dg.ConfigurableResource):
    """Aggregates (``sensor_values``), predictions (``predictions``) and device verdicts
    (``device_verdicts``) in a SQL database."""

    url: str
    lock_timeout_seconds: float = LOCK_TIMEOUT_SECONDS
    auth: str = "password"  # BSCORE_SQL_AUTH: or "entra", a managed identity's token per connection

    @property
    def engine(self) -> sa.Engine:
        with _engines_lock:
            engine = _engines.get((self.url, self.auth))
            if engine is None:
                validate_sql_url(self.url)
                engine = create_sql_engine(self.url, self.auth, pool_pre_ping=True, **engine_options(self.url))
                try:
                    ensure_schema(engine)  # the first connection
                except sa.exc.DBAPIError as exc:
                    missing = missing_odbc_driver(exc, self.url)
                    if missing is None:
                        raise
                    raise RuntimeError(missing) from None
                _engines[(self.url, self.auth)] = engine
            return engine

    def describe(self) -> str:
        """The URL for people: the password, and query values that may hold one, masked."""
        try:
            url = validate_sql_url(self.url)
        except ValueError:
            return "(an invalid database URL; see BSCORE_SQL_URL)"
        secret_keys = {"password", "pwd", "odbc_connect"}
        url = url.set(query={k: ("***" if k.lower() in secret_keys else v) for k, v in url.query.items()})
        return url.render_as_string(hide_password=True)

    def _replace(self, table: sa.Table, batches: Iterable[pd.DataFrame | pa.Table], where, start, end,
                 sensors=None, then=None) -> int:
        """Delete the rows ``where`` selects and insert the batches', then run ``then`` if given, in
        one transaction; returns the rows inserted."""
        checked = _checked_batches(table, batches, start, end, sensors)
        if sqlite_file(self.engine) is not None:  # SQLite serializes writers itself: no lock to take
            return _replace_sqlite(self.engine, table, checked, table.delete().where(where), then)
        rows = 0
        with self.engine.begin() as conn:
            lock_table_for_replace(conn, table, self.lock_timeout_seconds)
            conn.execute(table.delete().where(where))
            for data in checked:
                bulk_insert(conn, table, data)
                rows += len(data)
            if then is not None:  # under the table's lock: replaces adding the same pair take turns
                conn.execute(then)
        return rows

    def replace_sensor_values(self, frame: pd.DataFrame, start: datetime, end: datetime) -> None:
        """Replace the windows of the hours ``[start, end)`` (window ends in ``(start, end]``)."""
        self.replace_sensor_values_batches(start, end, [frame])

    def replace_sensor_values_batches(self, start: datetime, end: datetime,
                                      batches: Iterable[pa.Table | pd.DataFrame]) -> None:
        """Replace the windows of the hours ``[start, end)`` by those of ``batches``, in one transaction.

        Parameters
        ----------
        start, end : datetime
            The hours replaced: window ends in ``(start, end]``.
        batches : iterable of pyarrow Table or DataFrame
            ``ts, device, sensor, value, readings``, consumed one at a time inside the
            transaction (so an hour can be written in slices, none of them held with the others).
            An exception from the iterable, or a batch with rows outside the hours, rolls the
            whole replace back: the previous rows stay.
        """
        t = sensor_values.c
        self._replace(sensor_values, batches, sa.and_(t.ts > start, t.ts <= end), start, end,
                      then=record_series(start, end))

    def replace_predictions(self, frame: pd.DataFrame, start: datetime, end: datetime, sensors: list[str]) -> None:
        """Replace the predictions of ``sensors`` for the hours ``[start, end)``."""
        self.replace_predictions_batches(start, end, sensors, [frame])

    def replace_predictions_batches(self, start: datetime, end: datetime, sensors: list[str],
                                    batches: Iterable[pa.Table | pd.DataFrame]) -> int:
        """Replace the predictions of ``sensors`` for the hours ``[start, end)`` by the rows of
        ``batches`` (the shards' parts), in one transaction, one batch in memory at a time;
        returns the rows written. A batch with a row outside the hours and sensors, or any error
        while the batches are produced, leaves the previous rows."""
        t = predictions.c
        where = sa.and_(t.ts > start, t.ts <= end, t.sensor.in_(list(sensors)))
        return self._replace(predictions, batches, where, start, end, list(sensors))

    def publish_staged_predictions(self, run: str, start: datetime, end: datetime,
                                   expected: dict[str, int]) -> int:
        """Replace the predictions of the sensors of ``expected`` for the hours ``[start, end)`` by
        the rows run ``run``'s jobs staged, on the server, in one transaction; returns the rows
        published.

        Parameters
        ----------
        run : str
            The run's token, under which its shard jobs staged their rows.
        start, end : datetime
            The hours published: windows ending in ``(start, end]``.
        expected : dict
            The rows each sensor's shards reported. A sensor whose staged rows differ raises
            ``RuntimeError`` naming it, and the previous rows stay.
        """
        sensors = list(expected)
        t, s = predictions.c, prediction_staging.c
        staged = sa.and_(s.run == run, s.ts > start, s.ts <= end, s.sensor.in_(sensors))
        columns = [column.name for column in predictions.columns]
        with self.engine.begin() as conn:
            lock_table_for_replace(conn, predictions, self.lock_timeout_seconds)
            conn.execute(predictions.delete().where(t.ts > start, t.ts <= end, t.sensor.in_(sensors)))
            counts = dict(conn.execute(sa.select(s.sensor, sa.func.count()).where(staged).group_by(s.sensor)).all())
            wrong = {sensor: (int(counts.get(sensor, 0)), rows) for sensor, rows in expected.items()
                     if int(counts.get(sensor, 0)) != rows}
            if wrong:
                raise RuntimeError(f"run {run}, hours from {start}: the staged predictions do not hold what the "
                                   "shards reported (sensor: staged, reported): "
                                   + ", ".join(f"{sensor}: {a}, {b}" for sensor, (a, b) in sorted(wrong.items())))
            conn.execute(predictions.insert().from_select(
                columns, sa.select(*(s[name] for name in columns)).where(staged).order_by(s.ts, s.device, s.sensor)))
            conn.execute(prediction_staging.delete().where(staged))
            conn.execute(prediction_staging.delete().where(s.staged_at < _utc_now() - STALE_STAGING))
        return sum(expected.values())

    def discard_staged_predictions(self, run: str) -> None:
        """Delete every row run ``run``'s jobs staged (the run failed, or published none of them)."""
        with self.engine.begin() as conn:
            conn.execute(prediction_staging.delete().where(prediction_staging.c.run == run))

    def read_sensor_values(self, start=None, end=None, devices=None, sensors=None) -> pd.DataFrame:
        """Windows of the hours ``[start, end)``, optionally of some devices and sensors (``scoring.sql_read``);
        ``low`` and ``high`` are NaN where a window did not record them."""
        return read_sensor_values(self.engine, start, end, devices, sensors, table=sensor_values)

    def read_predictions(self, start=None, end=None, devices=None, sensors=None) -> pd.DataFrame:
        return read_predictions(self.engine, start, end, devices, sensors, table=predictions)

    def replace_device_verdicts_batches(self, start: datetime, end: datetime,
                                        batches: Iterable[pa.Table | pd.DataFrame]) -> int:
        """Replace the device verdicts of the hours ``[start, end)`` (windows ending in
        ``(start, end]``) by the rows of ``batches``, in one transaction; returns the rows
        written. A batch with a row outside the hours, or an error while the batches are
        produced, leaves the previous rows."""
        t = device_verdicts.c
        return self._replace(device_verdicts, batches, sa.and_(t.ts > start, t.ts <= end), start, end)

    def read_device_verdicts(self, start=None, end=None, devices=None) -> pd.DataFrame:
        """Device verdicts of the hours ``[start, end)``, optionally of some devices, sorted by
        device and ts: ``ts, device, is_anomaly, sensors_scored, sensors_flagged, flagged_sensors, method,
        score, contributions`` (the last three null in rows from before them)."""
        return read_device_verdicts(self.engine, start, end, devices, table=device_verdicts)

    def window_stats(self, start: datetime, end: datetime) -> tuple[int, int]:
        """``(windows, readings)`` stored for the hours ``[start, end)``: how many windows, and the
        sum of their reading counts (to reconcile with the raw readings they came from)."""
        t = sensor_values.c
        query = sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(t.readings), 0)).where(t.ts > start, t.ts <= end)
        with self.engine.connect() as conn:
            windows, readings = conn.execute(query).one()
        return int(windows), int(readings)

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

    # Predictions: shards write Parquet parts; the run publishes each hour from them.

    def devices_with_windows(self, start: datetime, end: datetime, sensors: list[str] | None = None) -> list[str]:
        """Devices with windows of ``sensors`` (``None``: of any sensor) in the hours ``[start, end)``:
        one DISTINCT query, all a scoring run needs to plan its shards."""
        t = sensor_values.c
        query = sa.select(t.device).where(t.ts > start, t.ts <= end)
        if sensors is not None:
            query = query.where(t.sensor.in_(list(sensors)))
        query = query.distinct().order_by(t.device)
        with self.engine.connect() as conn:
            return [row[0] for row in conn.execute(query)]

    def prediction_counts(self, start: datetime, end: datetime, sensors: list[str]) -> dict[str, int]:
        """Rows stored per sensor of ``sensors`` in the hours ``[start, end)``."""
        t = predictions.c
        query = (sa.select(t.sensor, sa.func.count()).where(t.ts > start, t.ts <= end, t.sensor.in_(list(sensors)))
                 .group_by(t.sensor))
        with self.engine.connect() as conn:
            counts = dict(conn.execute(query).all())
        return {str(sensor): int(counts.get(sensor, 0)) for sensor in sensors}
