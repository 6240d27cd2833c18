"""In-place migration of an older database's tables to time-leading keys.

bscore first keyed ``sensor_values`` and ``predictions`` by ``(device, sensor, ts)`` and
``device_verdicts`` by ``(device, ts)``, so every hour-scoped read, replace and count scanned
the whole history. The tables are now keyed with ``ts`` first (``resources/sql.py``). An older
database is brought to that layout when a store opens it (``ensure_schema``, under the schema
lock):

- SQLite cannot change a key: the table is rebuilt WITHOUT ROWID in one transaction (create the
  new table, copy the rows in key order, drop the old one, rename). Columns are copied by name:
  those both definitions have, plus any nullable column the old table has and this bscore does
  not know (another version's), so no data is dropped. A leftover rebuild table, from a copy made
  outside a transaction by an earlier tool, is discarded and the rebuild redone.
- PostgreSQL and SQL Server swap the primary key (drop, add with the table's own key
  definition, dialect options included) in one transaction.

A database with windows but no ``sensor_series`` (the fleet's device and sensor pairs, which
the time-leading key no longer lets a query read cheaply from ``sensor_values``) gets it,
filled from ``sensor_values`` in one scan.

Each step is idempotent: a table already keyed as bscore defines it is left alone.
"""

from __future__ import annotations

import sqlalchemy as sa

REBUILD_SUFFIX = "__bscore_rebuild"


def device_leading_layout(tables: sa.MetaData, *extra: sa.Column) -> sa.MetaData:
    """``tables``' time-keyed tables as the first layout keyed them (device first, rowid tables
    on SQLite), with ``extra`` columns in ``sensor_values``: the databases this module migrates,
    for tests and benchmarks."""
    old = sa.MetaData()
    for table in [table for table in tables.sorted_tables if table.primary_key.columns[0].name == "ts"]:
        key = ["device", "sensor", "ts"] if "sensor" in table.c else ["device", "ts"]
        sa.Table(table.name, old, *(sa.Column(c.name, c.type, nullable=c.nullable) for c in table.columns),
                 *(column._copy() for column in extra if table.name == "sensor_values"),
                 sa.PrimaryKeyConstraint(*key))
    return old


def key_columns(engine_or_conn, name: str) -> list[str]:
    """The primary key's columns of table ``name``, in key order."""
    return sa.inspect(engine_or_conn).get_pk_constraint(name)["constrained_columns"]


def _sqlite_without_rowid(conn: sa.Connection, name: str) -> bool:
    created = conn.execute(sa.text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = :name"),
                           {"name": name}).scalar()
    return bool(created) and "WITHOUT ROWID" in created.upper()


def needs_migration(engine: sa.Engine, table: sa.Table) -> bool:
    """Whether the database's ``table`` exists with a key other than ``table``'s (or, on SQLite,
    as a rowid table when bscore's is WITHOUT ROWID)."""
    inspector = sa.inspect(engine)
    if table.name not in inspector.get_table_names():
        return False
    wanted = [column.name for column in table.primary_key.columns]
    keys = key_columns(engine, table.name)
    present = {column["name"] for column in inspector.get_columns(table.name)}
    if set(keys) != set(wanted) or any(not c.nullable and c.name not in present for c in table.columns):
        return False  # not a bscore table of another layout: ensure_schema reports it by name
    if keys != wanted:
        return True
    if engine.dialect.name == "sqlite" and table.dialect_options["sqlite"]["with_rowid"] is False:
        with engine.connect() as conn:
            return not _sqlite_without_rowid(conn, table.name)
    return False


def _rebuild_sqlite(engine: sa.Engine, table: sa.Table) -> None:
    """Rebuild ``table`` in one SQLite transaction with bscore's definition, rows kept."""
    quote = engine.dialect.identifier_preparer.quote
    scratch = f"{table.name}{REBUILD_SUFFIX}"
    old_columns = sa.inspect(engine).get_columns(table.name)
    known = {column.name for column in table.columns}
    target = sa.Table(scratch, sa.MetaData(), *(column._copy() for column in table.columns),
                      sa.PrimaryKeyConstraint(*(column.name for column in table.primary_key.columns)),
                      sqlite_with_rowid=table.dialect_options["sqlite"]["with_rowid"])
    for column in old_columns:  # another bscore's nullable columns travel with the rows
        if column["name"] not in known and column.get("nullable", True):
            target.append_column(sa.Column(column["name"], column["type"], nullable=True))
    shared = [column["name"] for column in old_columns if column["name"] in target.c]
    names = ", ".join(quote(name) for name in shared)
    order = ", ".join(quote(column.name) for column in table.primary_key.columns)
    statements = rebuild_statements(table.name, str(sa.schema.CreateTable(target).compile(dialect=engine.dialect)),
                                    scratch, names, order, quote)
    # pysqlite would run the CREATE outside any transaction; an explicit one makes the rebuild
    # all or nothing (a crash midway leaves the old table, and the next open redoes it).
    raw = engine.raw_connection()
    try:
        driver = raw.driver_connection
        previous, driver.isolation_level = driver.isolation_level, None
        cursor = driver.cursor()
        try:
            cursor.execute("BEGIN IMMEDIATE")
            for statement in statements:
                cursor.execute(statement)
            cursor.execute("COMMIT")
        except BaseException as exc:
            if driver.in_transaction:
                cursor.execute("ROLLBACK")
            if isinstance(exc, Exception) and type(exc).__module__ == "sqlite3":
                raise RuntimeError(f"migrating table {table.name} to time-leading keys failed and was rolled back "
                                   f"(the old table is unchanged): {exc}") from exc
            raise
        finally:
            driver.isolation_level = previous
    finally:
        raw.close()


def rebuild_statements(name: str, create_scratch: str, scratch: str, names: str, order: str, quote) -> list[str]:
    """The SQLite rebuild of table ``name`` through ``scratch``, in the order they run."""
    return [f"DROP TABLE IF EXISTS {quote(scratch)}",
            create_scratch,
            f"INSERT INTO {quote(scratch)} ({names}) SELECT {names} FROM {quote(name)} ORDER BY {order}",
            f"DROP TABLE {quote(name)}",
            f"ALTER TABLE {quote(scratch)} RENAME TO {quote(name)}"]


def _swap_key(engine: sa.Engine, table: sa.Table) -> None:
    """Drop the old primary key and add ``table``'s, in one transaction (PostgreSQL, SQL Server)."""
    quote = engine.dialect.identifier_preparer.quote
    old_name = sa.inspect(engine).get_pk_constraint(table.name)["name"]
    with engine.begin() as conn:
        if old_name:
            conn.execute(sa.text(f"ALTER TABLE {quote(table.name)} DROP CONSTRAINT {quote(old_name)}"))
        # AddConstraint stops its constraint from being created inline by later CREATE TABLEs:
        # it is given a copy's, never the store's own definition.
        conn.execute(sa.schema.AddConstraint(table.to_metadata(sa.MetaData()).primary_key))


def drop_leftover_rebuilds(engine: sa.Engine, tables) -> list[str]:
    """Drop scratch tables a rebuild outside a transaction left behind; returns their names."""
    present = set(sa.inspect(engine).get_table_names())
    leftovers = [f"{table.name}{REBUILD_SUFFIX}" for table in tables if f"{table.name}{REBUILD_SUFFIX}" in present]
    if leftovers:
        quote = engine.dialect.identifier_preparer.quote
        with engine.begin() as conn:
            for name in leftovers:
                conn.execute(sa.text(f"DROP TABLE {quote(name)}"))
    return leftovers


def add_series_table(engine: sa.Engine) -> bool:
    """Create ``sensor_series`` filled from ``sensor_values`` (one scan) for a database that has
    windows but no series table yet; returns whether it did."""
    from resources.sql import sensor_series, sensor_values

    inspector = sa.inspect(engine)
    present = set(inspector.get_table_names())
    if sensor_series.name in present or sensor_values.name not in present:
        return False
    if not {"device", "sensor"} <= {column["name"] for column in inspector.get_columns(sensor_values.name)}:
        return False  # not bscore's table: ensure_schema reports it by name
    v = sensor_values.c
    with engine.begin() as conn:
        sensor_series.create(conn)
        conn.execute(sensor_series.insert().from_select(["device", "sensor"],
                                                        sa.select(v.device, v.sensor).distinct()))
    return True


def migrate_to_time_leading_keys(engine: sa.Engine, tables=None) -> list[str]:
    """Bring each existing table of ``tables`` (default: bscore's) to bscore's key, in place.

    Parameters
    ----------
    engine : sqlalchemy.Engine
        The database; SQLite, PostgreSQL or SQL Server.
    tables : iterable of sqlalchemy.Table, optional
        Definitions to migrate to; the store's tables when omitted.

    Returns
    -------
    list of str
        The names of the tables migrated (empty when all already had their keys).
    """
    if tables is None:
        from resources.sql import metadata

        tables = metadata.sorted_tables
    tables = list(tables)
    drop_leftover_rebuilds(engine, tables)
    migrated = []
    for table in tables:
        if not needs_migration(engine, table):
            continue
        if engine.dialect.name == "sqlite":
            _rebuild_sqlite(engine, table)
        elif engine.dialect.name in ("postgresql", "mssql"):
            _swap_key(engine, table)
        else:
            raise RuntimeError(f"table {table.name} has an older key and bscore cannot migrate it on "
                               f"{engine.dialect.name}; see docs/operations.md, 'Migrating an older database'")
        migrated.append(table.name)
    if add_series_table(engine):
        migrated.append("sensor_series")
    return migrated
