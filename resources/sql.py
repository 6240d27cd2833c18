"""The SQL store: window aggregates and predictions, through SQLAlchemy 2.

SQLite by default; PostgreSQL and Azure SQL (``mssql+pyodbc``) with the same code. Both
tables have primary keys, and every write replaces the rows of the hours (and sensors) it
covers in one transaction, so a re-run never duplicates a row and a crash leaves the old
rows or the new ones.
"""

from __future__ import annotations

import threading
from datetime import datetime

import dagster as dg
import pandas as pd
import sqlalchemy as sa

metadata = sa.MetaData()

sensor_values = sa.Table(
    "sensor_values",
    metadata,
    sa.Column("device", sa.String(64), primary_key=True),
    sa.Column("sensor", sa.String(64), primary_key=True),
    sa.Column("ts", sa.DateTime, primary_key=True),
    sa.Column("value", sa.Float, nullable=False),
    sa.Column("readings", sa.Integer, nullable=False),
)

predictions = sa.Table(
    "predictions",
    metadata,
    sa.Column("device", sa.String(64), primary_key=True),
    sa.Column("sensor", sa.String(64), primary_key=True),
    sa.Column("ts", sa.DateTime, primary_key=True),
    sa.Column("value", sa.Float, nullable=False),
    sa.Column("score", sa.Float, nullable=False),
    sa.Column("is_anomaly", sa.Boolean, nullable=False),
    sa.Column("model_version", sa.String(64), nullable=False),
)

_engines: dict[str, sa.Engine] = {}
_engines_lock = threading.Lock()


def _records(frame: pd.DataFrame, columns: list[str]) -> list[dict]:
    out = frame[columns].copy()
    if "ts" in out:
        out["ts"] = pd.to_datetime(out["ts"]).dt.to_pydatetime()
    return out.astype(object).to_dict("records")


class SqlStore(dg.ConfigurableResource):
    """Aggregates (``sensor_values``) and predictions (``predictions``) in a SQL database."""

    url: str

    @property
    def engine(self) -> sa.Engine:
        with _engines_lock:
            engine = _engines.get(self.url)
            if engine is None:
                engine = sa.create_engine(self.url, pool_pre_ping=True)
                metadata.create_all(engine)
                _engines[self.url] = engine
            return engine

    def describe(self) -> str:
        return sa.make_url(self.url).render_as_string(hide_password=True)

    def _replace(self, table: sa.Table, frame: pd.DataFrame, where) -> None:
        with self.engine.begin() as conn:
            conn.execute(table.delete().where(where))
            if len(frame):
                conn.execute(table.insert(), _records(frame, [c.name for c in table.columns]))

    def replace_sensor_values(self, frame: pd.DataFrame, start: datetime, end: datetime) -> None:
        """Replace the windows of the hours ``[start, end)`` (window ends in ``(start, end]``)."""
        t = sensor_values.c
        self._replace(sensor_values, frame, sa.and_(t.ts > start, t.ts <= end))

    def replace_predictions(self, frame: pd.DataFrame, start: datetime, end: datetime, sensors: list[str]) -> None:
        """Replace the predictions of ``sensors`` for the hours ``[start, end)``."""
        t = predictions.c
        self._replace(predictions, frame, sa.and_(t.ts > start, t.ts <= end, t.sensor.in_(sensors)))

    def _read(self, table: sa.Table, start, end, devices=None, sensors=None) -> pd.DataFrame:
        t = table.c
        query = sa.select(table)
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
            frame = pd.DataFrame(conn.execute(query).fetchall(), columns=[c.name for c in table.columns])
        frame["ts"] = pd.to_datetime(frame["ts"]).astype("datetime64[ns]")
        return frame[["ts"] + [c for c in frame.columns if c != "ts"]]

    def read_sensor_values(self, start=None, end=None, devices=None, sensors=None) -> pd.DataFrame:
        """Windows of the hours ``[start, end)``, optionally of some devices and sensors."""
        frame = self._read(sensor_values, start, end, devices, sensors)
        return frame.astype({"value": "float64", "readings": "int64"})

    def read_predictions(self, start=None, end=None, devices=None, sensors=None) -> pd.DataFrame:
        frame = self._read(predictions, start, end, devices, sensors)
        return frame.astype({"value": "float64", "score": "float64", "is_anomaly": "bool"})

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

    def distinct(self, column: str) -> list[str]:
        """Distinct devices or sensors that have windows."""
        col = sensor_values.c[column]
        with self.engine.connect() as conn:
            return sorted(row[0] for row in conn.execute(sa.select(col).distinct()))
