"""The SQL a scoring shard job needs, without Dagster: read its devices' windows.

An Azure ML job (``scoring.entrypoint``) reaches the database itself, with the URL in its
environment (``BSCORE_SQL_URL``; on Azure a URL that signs in with the job's managed identity,
no password). It only reads: its predictions go to blob storage, from where the run publishes
each hour to SQL. The table is reflected from the database, which ``resources.sql`` creates,
so its definition lives in one place; a database from before windows recorded their extremes
(no ``low``, ``high`` columns) reads as windows without them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import sqlalchemy as sa

EXTREMES = ("low", "high")  # columns a database created before they were recorded lacks


class ShardSql:
    """``read_sensor_values`` on a SQLAlchemy URL (what ``scoring.shard_task.run_shard_task``
    asks of its store)."""

    def __init__(self, url: str):
        sqlite = sa.make_url(url).get_backend_name() == "sqlite"  # a reader waits out a writer's commit
        self.engine = sa.create_engine(url, pool_pre_ping=True, **({"connect_args": {"timeout": 60}} if sqlite else {}))
        self._table = None

    def read_sensor_values(self, start, end, devices=None, sensors=None) -> pd.DataFrame:
        """Windows of the hours ``[start, end)`` of ``devices`` and ``sensors``, sorted by device,
        sensor, ts; ``low`` and ``high`` NaN where not recorded."""
        if self._table is None:
            self._table = sa.Table("sensor_values", sa.MetaData(), autoload_with=self.engine)
        t = self._table.c
        extremes = [t[name] if name in t else sa.null().label(name) for name in EXTREMES]
        query = sa.select(t.ts, t.device, t.sensor, t.value, t.readings, *extremes).where(t.ts > start, t.ts <= end)
        if devices is not None:
            query = query.where(t.device.in_(list(devices)))
        if sensors is not None:
            query = query.where(t.sensor.in_(list(sensors)))
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(t.device, t.sensor, t.ts)).all()
        frame = pd.DataFrame(rows, columns=["ts", "device", "sensor", "value", "readings", *EXTREMES])
        frame["ts"] = pd.to_datetime(frame["ts"]).astype("datetime64[ns]")
        for name in EXTREMES:
            frame[name] = pd.to_numeric(frame[name].astype(object).where(frame[name].notna(), np.nan))
        return frame.astype({"device": str, "sensor": str, "value": "float64", "readings": "int64",
                             "low": "float64", "high": "float64"})
