"""``BSCORE_AGGREGATION=asa``: Azure Stream Analytics writes ``raw_readings`` and
``sensor_aggregates``; Dagster observes them.

The two assets become external (``dg.AssetSpec``: nothing in Dagster computes them) and
``asa_aggregation_sensor`` records each hour once Stream Analytics' output for it is complete:
when the newest window end in SQL ``sensor_values`` (the job's output watermark) has passed the
hour's end plus ``BSCORE_ALLOWED_LATENESS_MINUTES`` and the job's census of the hour is written
(or the hour has no windows at all). For that hour it reports materializations of both assets
with the local assets' per-hour metadata, and the results of the local checks
(``finite_values``, ``readings_reconciled``, ``device_coverage``) as check evaluations, so
Declarative Automation scores the hour as it would after a local aggregation.

What it reads is bounded by the fleet, not the readings: SQL sums grouped by device, and the
census (distinct readings per device, see ``resources.asa``); never the raw archive or the
windows themselves. The cursor is the next hour to record, so each hour is recorded once.
"""

from __future__ import annotations

import io
import json

import dagster as dg
import pandas as pd
import pyarrow.parquet as pq
import sqlalchemy as sa

from bscore_assets.partitions import hour_key, hourly_partitions_def
from bscore_assets.settings import PipelineSettings, Settings
from resources.blob import BlobStore
from resources.sql import SqlStore, sensor_values
from scoring.blob_layout import asa_census_prefix, raw_prefix
from scoring.time_units import HOUR

MAX_HOURS_PER_TICK = 24
SENSOR_NAME = "asa_aggregation_sensor"
SOURCE = "Azure Stream Analytics"
# Largest finite double: a NaN (PostgreSQL sorts it above every number) or an infinity is outside.
FINITE = 1.7976931348623157e308


def asa_asset_specs(settings: Settings) -> list[dg.AssetSpec]:
    """The external ``raw_readings`` and ``sensor_aggregates``, on the hours from ``BSCORE_START``."""
    hours = hourly_partitions_def(settings)
    return [
        dg.AssetSpec(
            "raw_readings", partitions_def=hours, group_name="ingestion", kinds={"parquet", "azure"},
            description="Readings as devices sent them, archived per hour under raw/<hour>/ by the Stream Analytics "
                        "job (BSCORE_AGGREGATION=asa); recorded by asa_aggregation_sensor.",
        ),
        dg.AssetSpec(
            "sensor_aggregates", deps=["raw_readings"], partitions_def=hours, group_name="aggregation",
            kinds={"sql", "azure"},
            description="Average of each device's sensor per tumbling window (end as timestamp), SQL table "
                        "sensor_values, written by the Stream Analytics job (BSCORE_AGGREGATION=asa); recorded by "
                        "asa_aggregation_sensor.",
        ),
    ]


def read_census(blob: BlobStore, hour: pd.Timestamp) -> pd.Series | None:
    """Distinct readings per device the job counted for ``hour``, or None before it is written.

    Blob output is at-least-once: a restarted job may write a device's row again, with the same
    count, so each device is kept once.
    """
    keys = [k for k in blob.list(asa_census_prefix(hour)) if k.endswith(".parquet")]
    if not keys:
        return None
    frames = [pq.read_table(io.BytesIO(blob.read_bytes(k)), columns=["device", "readings"]).to_pandas()
              for k in keys]
    census = pd.concat(frames, ignore_index=True)
    return census.astype({"device": str}).groupby("device")["readings"].max().astype("int64")


def stored_hour(sql: SqlStore, hour: pd.Timestamp) -> tuple[pd.DataFrame, int]:
    """Per device of ``hour`` in SQL: windows, reading counts and non-finite windows; and the
    number of distinct sensors. Computed by the database, grouped by device."""
    t = sensor_values.c
    inside = sa.and_(t.ts > hour, t.ts <= hour + HOUR)
    non_finite = sa.func.sum(sa.case((sa.not_(t.value.between(-FINITE, FINITE)), 1), else_=0))
    per_device = (sa.select(t.device, sa.func.count().label("windows"), sa.func.sum(t.readings).label("readings"),
                            non_finite.label("non_finite")).where(inside).group_by(t.device))
    with sql.engine.connect() as conn:
        rows = conn.execute(per_device).all()
        sensors = conn.execute(sa.select(sa.func.count(sa.distinct(t.sensor))).where(inside)).scalar_one()
    frame = pd.DataFrame(rows, columns=["device", "windows", "readings", "non_finite"])
    frame = frame.astype({"device": str, "windows": "int64", "readings": "int64", "non_finite": "int64"})
    return frame.set_index("device"), int(sensors)


def earliest_window(sql: SqlStore) -> pd.Timestamp | None:
    with sql.engine.connect() as conn:
        earliest = conn.execute(sa.select(sa.func.min(sensor_values.c.ts))).scalar_one()
    return None if earliest is None else pd.Timestamp(earliest)


def last_complete_hour(watermark: pd.Timestamp, lateness_minutes: int) -> pd.Timestamp:
    """The newest hour ``H`` whose end plus the lateness the watermark has reached."""
    return (watermark - pd.Timedelta(minutes=lateness_minutes)).floor("h") - HOUR


def observe_hour(sql: SqlStore, blob: BlobStore, hour: pd.Timestamp) -> dict | None:
    """What the job wrote for ``hour``: metadata and check inputs, or None while its census is
    missing although SQL has its windows (the job's blob output is behind its SQL output)."""
    stored, sensors = stored_hour(sql, hour)
    census = read_census(blob, hour)
    if census is None:
        if len(stored):
            return None
        census = pd.Series([], dtype="int64")
    # Per device, SQL's reading counts against the census (both are distinct readings).
    both = pd.concat([census.rename("expected"), stored["readings"].rename("stored")], axis=1).fillna(0)
    mismatched = both[both["expected"] != both["stored"]].astype("int64")
    return {
        "windows": int(stored["windows"].sum()),
        "readings": int(stored["readings"].sum()),
        "devices": len(stored),
        "sensors": sensors,
        "census_readings": int(census.sum()),
        "census_devices": len(census),
        "non_finite": int(stored["non_finite"].sum()),
        "mismatched_devices": {d: [int(r.expected), int(r.stored)] for d, r in mismatched.iterrows()},
        "devices_missing": sorted(set(census.index) - set(stored.index)),
    }


def hour_events(hour: pd.Timestamp, found: dict, window_seconds: int, watermark: pd.Timestamp) -> list:
    """The materializations and check evaluations that record one observed hour."""
    key = hour_key(hour)
    raw = dg.AssetMaterialization(
        "raw_readings", partition=key,
        metadata={"readings": found["census_readings"], "devices": found["census_devices"], "written_by": SOURCE,
                  "raw_prefix": raw_prefix(hour)})
    aggregates = dg.AssetMaterialization(
        "sensor_aggregates", partition=key,
        metadata={"aggregated": True, "windows": found["windows"], "readings": found["readings"],
                  "devices": found["devices"], "sensors": found["sensors"], "window_seconds": window_seconds,
                  "table": "sensor_values", "written_by": SOURCE, "watermark": watermark.isoformat()})
    check = dict(asset_key=dg.AssetKey("sensor_aggregates"), partition=key)
    mismatched = found["mismatched_devices"]
    return [
        raw,
        aggregates,
        dg.AssetCheckEvaluation(**check, check_name="finite_values", passed=found["non_finite"] == 0,
                                metadata={"non_finite_windows": dg.MetadataValue.json(
                                    {key: found["non_finite"]} if found["non_finite"] else {})}),
        dg.AssetCheckEvaluation(**check, check_name="readings_reconciled", passed=not mismatched,
                                metadata={"hours_checked": 1, "mismatched_hours": dg.MetadataValue.json(
                                    {key: {"expected": found["census_readings"], "stored": found["readings"],
                                           "devices": mismatched}} if mismatched else {})}),
        dg.AssetCheckEvaluation(**check, check_name="device_coverage", passed=not found["devices_missing"],
                                severity=dg.AssetCheckSeverity.WARN,
                                metadata={"devices_missing_windows": dg.MetadataValue.json(
                                    {key: found["devices_missing"]} if found["devices_missing"] else {})}),
    ]


def build_asa_aggregation_sensor(settings: Settings) -> dg.SensorDefinition:
    @dg.sensor(name=SENSOR_NAME, minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.STOPPED)
    def asa_aggregation_sensor(context: dg.SensorEvaluationContext, sql: SqlStore, blob: BlobStore,
                               pipeline: PipelineSettings):
        """Record each hour Stream Analytics has completed: its raw_readings and sensor_aggregates
        materializations, with the local assets' metadata and checks."""
        watermark = sql.latest_window()
        if watermark is None:
            return dg.SkipReason("no windows in sensor_values yet: is the Stream Analytics job running?")
        cursor = json.loads(context.cursor) if context.cursor else {}
        first = pd.Timestamp(cursor["next"]) if "next" in cursor else \
            max((earliest_window(sql) - pd.Timedelta(microseconds=1)).floor("h"), settings.start)
        last = last_complete_hour(watermark, settings.allowed_lateness_minutes)
        events, hour = [], first
        while hour <= last and hour < first + MAX_HOURS_PER_TICK * HOUR:
            found = observe_hour(sql, blob, hour)
            if found is None:
                context.log.info(f"{hour_key(hour)}: windows are in SQL but the job's census is not written yet")
                break
            events += hour_events(hour, found, pipeline.window_seconds, watermark)
            context.log.info(f"{hour_key(hour)}: {found['windows']} windows of {found['devices']} devices recorded")
            hour += HOUR
        new_cursor = json.dumps({"next": hour.isoformat()})
        if not events:
            return dg.SensorResult(skip_reason=f"next hour {hour_key(hour)} not complete: watermark "
                                               f"{watermark.isoformat()} + lateness has not passed its end",
                                   cursor=new_cursor)
        return dg.SensorResult(asset_events=events, cursor=new_cursor)

    return asa_aggregation_sensor


def asa_aggregation_objects(settings: Settings) -> tuple[list[dg.AssetSpec], list[dg.SensorDefinition]]:
    """The external ``raw_readings`` and ``sensor_aggregates``, and the sensor that records them.

    Parameters
    ----------
    settings : Settings
        Gives the allowed lateness and the first hour.

    Returns
    -------
    (list of AssetSpec, list of SensorDefinition)
        To be used instead of the local ``raw_readings`` and ``sensor_aggregates`` assets and
        the sensors that drain and aggregate.
    """
    return asa_asset_specs(settings), [build_asa_aggregation_sensor(settings)]
