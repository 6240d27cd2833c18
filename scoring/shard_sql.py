"""The SQL a scoring shard job needs, without Dagster: read its devices' windows.

An Azure ML job (``scoring.entrypoint``) reaches the database itself, with the URL in its
environment (``BSCORE_SQL_URL``; on Azure a URL that signs in with the job's managed identity,
no password). It only reads: its predictions go to blob storage, from where the run publishes
each hour to SQL. It reads with ``scoring.sql_read``, as the resource does; the table is
reflected from the database, which ``resources.sql`` creates, so its definition lives in one place.
"""

from __future__ import annotations

import pandas as pd
import sqlalchemy as sa

from scoring.sql_read import read_sensor_values


class ShardSql:
    """``read_sensor_values`` on a SQLAlchemy URL (what ``scoring.shard_task.run_shard_task``
    asks of its store)."""

    def __init__(self, url: str):
        sqlite = sa.make_url(url).get_backend_name() == "sqlite"  # a reader waits out a writer's commit
        self.engine = sa.create_engine(url, pool_pre_ping=True, **({"connect_args": {"timeout": 60}} if sqlite else {}))

    def read_sensor_values(self, start, end, devices=None, sensors=None) -> pd.DataFrame:
        """Windows of the hours ``[start, end)`` of ``devices`` and ``sensors``, sorted by device,
        sensor, ts: the same reader as the resource's (``scoring.sql_read``)."""
        return read_sensor_values(self.engine, start, end, devices, sensors)
