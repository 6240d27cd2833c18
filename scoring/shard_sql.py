"""The SQL a scoring shard job needs, without Dagster: read its devices' windows, stage its predictions.

An Azure ML job (``scoring.entrypoint``) reaches the database itself, with the URL in its
environment (``BSCORE_SQL_URL``; on Azure a URL that signs in with the job's managed identity,
no password, with ``BSCORE_SQL_AUTH=entra``: ``scoring.entra_sql``). It reads its windows with
``scoring.sql_read``, as the resource does, and writes its predictions into ``prediction_staging``
under the run's token with ``scoring.sql_write`` (COPY on PostgreSQL, ``fast_executemany`` on
Azure SQL), from where the run publishes each hour on the server. The tables are reflected
from the database, which ``resources.sql`` creates, so their definitions live in one place. A
database from before windows recorded their extremes (no ``low``, ``high`` columns) reads as windows without them, which the
scorer judges by their means alone.
"""

from __future__ import annotations

import pandas as pd
import sqlalchemy as sa

from scoring.entra_sql import create_sql_engine
from scoring.sql_read import read_sensor_values, reflected_table
from scoring.sql_write import bulk_insert

STAGING = "prediction_staging"
DEVICES_PER_DELETE = 1000  # SQL Server takes at most 2100 parameters a statement


class ShardSql:
    """``read_sensor_values`` on a SQLAlchemy URL (what ``scoring.shard_task.run_shard_task``
    asks of its store)."""

    def __init__(self, url: str, auth: str = "password"):
        parsed = sa.make_url(url)
        options = {}
        if parsed.get_backend_name() == "sqlite":  # a reader waits out a writer's commit
            options["connect_args"] = {"timeout": 60}
        elif parsed.get_backend_name() == "mssql" and parsed.get_driver_name() == "pyodbc":
            options["fast_executemany"] = True  # staging: one round trip per batch of rows
        self.engine = create_sql_engine(url, auth, pool_pre_ping=True, **options)

    def read_sensor_values(self, start, end, devices=None, sensors=None) -> pd.DataFrame:
        """Windows of the hours ``[start, end)`` of ``devices`` and ``sensors``, sorted by device,
        sensor, ts: the same reader as the resource's (``scoring.sql_read``)."""
        return read_sensor_values(self.engine, start, end, devices, sensors)

    def stage_predictions(self, run: str, devices, start, end, frames) -> int:
        """Stage the predictions ``frames`` hold under run ``run``, replacing what an earlier
        attempt of the same shard (``devices``, the hours ``[start, end)``) staged, in one
        transaction; returns the rows staged."""
        table = reflected_table(self.engine, STAGING)
        s, devices = table.c, list(devices)
        staged_at = pd.Timestamp.now(tz="UTC").tz_localize(None)
        rows = 0
        with self.engine.begin() as conn:
            for i in range(0, len(devices), DEVICES_PER_DELETE):
                conn.execute(table.delete().where(s.run == run, s.ts > start, s.ts <= end,
                                                  s.device.in_(devices[i:i + DEVICES_PER_DELETE])))
            for frame in frames:
                if len(frame):
                    bulk_insert(conn, table, frame.assign(run=run, staged_at=staged_at))
                    rows += len(frame)
        return rows
