"""The SQL a scoring shard job needs, without Dagster: read its windows, stage its predictions.

An Azure ML job (``scoring.entrypoint``) reaches the database itself, with the URL in its
environment (``BSCORE_SQL_URL``; on Azure a URL that signs in with the job's managed identity,
no password). The tables are reflected from the database, which ``resources.sql`` creates, so
their definition lives in one place. Staging tables are the run's own
(``prediction_staging_<UTC time>_<random>``); the run publishes them (``SqlStore.publish_staged_predictions``).
"""

from __future__ import annotations

import re
import uuid

import pandas as pd
import sqlalchemy as sa

STAGING_PREFIX = "prediction_staging_"
STAGING_NAME = re.compile(rf"^{STAGING_PREFIX}(\d{{14}})_[0-9a-f]{{8}}$")
INSERT_CHUNK_ROWS = 50_000
PREDICTION_COLUMNS = ["ts", "device", "sensor", "value", "score", "is_anomaly", "model_version"]


def staging_table_name(now=None) -> str:
    """A new staging table's name: its creation time (UTC) and a random suffix."""
    stamp = pd.Timestamp.now(tz="UTC") if now is None else pd.Timestamp(now)
    return f"{STAGING_PREFIX}{stamp:%Y%m%d%H%M%S}_{uuid.uuid4().hex[:8]}"


def check_staging_name(name: str) -> str:
    if not STAGING_NAME.match(name):  # the name reaches SQL as an identifier
        raise ValueError(f"{name!r} is not a prediction staging table name")
    return name


def job_engine_options(url: str) -> dict:
    """``create_engine`` options: pyodbc's bulk path on Azure SQL; on SQLite (a stand-in for a
    shared database) a long wait for the write lock, since the shards' jobs write in turns."""
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "mssql" and parsed.get_driver_name() == "pyodbc":
        return {"fast_executemany": True}
    if parsed.get_backend_name() == "sqlite":
        return {"connect_args": {"timeout": 600}}
    return {}


class ShardSql:
    """``read_sensor_values`` and ``stage_predictions`` on a SQLAlchemy URL (what
    ``scoring.shard_task.run_shard_task`` asks of its store)."""

    def __init__(self, url: str):
        self.engine = sa.create_engine(url, pool_pre_ping=True, **job_engine_options(url))
        self._tables: dict[str, sa.Table] = {}

    def _table(self, name: str) -> sa.Table:
        if name not in self._tables:
            self._tables[name] = sa.Table(name, sa.MetaData(), autoload_with=self.engine)
        return self._tables[name]

    def read_sensor_values(self, start, end, devices=None, sensors=None) -> pd.DataFrame:
        """Windows of the hours ``[start, end)`` of ``devices`` and ``sensors``, sorted by device, sensor, ts."""
        t = self._table("sensor_values").c
        query = sa.select(t.ts, t.device, t.sensor, t.value, t.readings).where(t.ts > start, t.ts <= end)
        if devices is not None:
            query = query.where(t.device.in_(list(devices)))
        if sensors is not None:
            query = query.where(t.sensor.in_(list(sensors)))
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(t.device, t.sensor, t.ts)).all()
        frame = pd.DataFrame(rows, columns=["ts", "device", "sensor", "value", "readings"])
        frame["ts"] = pd.to_datetime(frame["ts"]).astype("datetime64[ns]")
        return frame.astype({"device": str, "sensor": str, "value": "float64", "readings": "int64"})

    def stage_predictions(self, name: str, frame: pd.DataFrame, start, end, sensors, devices) -> None:
        """Replace ``devices`` x ``sensors`` of the hours ``[start, end)`` in the staging table, in one transaction."""
        table = self._table(check_staging_name(name))
        t = table.c
        rows = frame[PREDICTION_COLUMNS].astype({"device": str, "sensor": str, "model_version": str,
                                                 "is_anomaly": bool})
        with self.engine.begin() as conn:
            conn.execute(table.delete().where(t.ts > start, t.ts <= end, t.sensor.in_(list(sensors)),
                                              t.device.in_(list(devices))))
            # In chunks: Python row objects cost ~10x the columns, so only a chunk of them at a time.
            for first in range(0, len(rows), INSERT_CHUNK_ROWS):
                chunk = rows.iloc[first:first + INSERT_CHUNK_ROWS]
                conn.execute(table.insert(), chunk.assign(ts=chunk["ts"].dt.to_pydatetime()).to_dict("records"))
