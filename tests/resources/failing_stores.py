"""SQL stores that fail inside a process-pool worker as a real database driver does: with an
exception that does not pickle (its ``__init__`` takes arguments its ``args`` do not hold).
A module of its own, so that spawned workers can import the classes."""

from pathlib import Path

from resources.sql import SqlStore


class DriverError(Exception):
    """Like psycopg's and SQLAlchemy's errors: rebuilt from ``args`` alone, it fails to unpickle."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


class DroppedConnection(ConnectionError):
    """A dropped connection (an outage) that does not pickle either."""

    def __init__(self, message: str, host: str):
        super().__init__(message)
        self.host = host


class BrokenSqlStore(SqlStore):
    """Every read fails with a non-transient driver error."""

    def read_sensor_values(self, *args, **kwargs):
        raise DriverError("relation \"sensor_values\" is corrupt at block 7", 11)


class FlakySqlStore(SqlStore):
    """The first ``drops`` reads, counted across processes in ``counter``, lose their connection."""

    counter: str
    drops: int

    def read_sensor_values(self, *args, **kwargs):
        counter = Path(self.counter)
        seen = int(counter.read_text()) if counter.exists() else 0
        if seen < self.drops:
            counter.write_text(str(seen + 1))
            raise DroppedConnection("server closed the connection unexpectedly", "db.example")
        return super().read_sensor_values(*args, **kwargs)
