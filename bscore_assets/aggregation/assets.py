"""``sensor_aggregates``: tumbling-window averages per device and sensor in SQL ``sensor_values``.

An hour is aggregated again only when its raw content changed since its last aggregation (the
raw version its latest materialization recorded) or SQL no longer holds what was stored then;
otherwise the run says so and leaves SQL alone.
"""

import dagster as dg
import pandas as pd

from bscore_assets.aggregation.checks import aggregate_check_results, aggregate_check_specs
from bscore_assets.automation import scoring_freshness_policy, updated_since_handled
from bscore_assets.hours import latest_partition_metadata
from bscore_assets.partitions import hour_key, hourly_partitions_def
from bscore_assets.retention.records import refuse_retired_hours
from bscore_assets.retries import retry_on_outage
from bscore_assets.settings import PipelineSettings, Settings
from bscore_assets.storage import hours_between, raw_parts, raw_version, window_bounds
from bscore_assets.step_guard import guard_step
from resources.blob import BlobStore
from resources.sql import SqlStore
from scoring.blob_layout import part_layout
from scoring.hour_slices import HourTally, plan_hour_slices
from scoring.raw_parts import read_raw_parts
from scoring.windows import window_means_table
from scoring.time_units import HOUR

CARRIED = ("windows", "readings", "devices", "sensors", "redelivered", "conflicts")


def aggregate_hour(blob: BlobStore, sql: SqlStore, hour: pd.Timestamp, window_seconds: int,
                   keys: list[str] | None = None) -> dict:
    """Aggregate one hour into SQL, in columns and time slices (``scoring.hour_slices``), so that
    memory holds one slice's readings whatever the fleet's size; return its metadata and what
    its checks need. The slices' windows replace the hour in one transaction. ``keys`` is the
    hour's raw parts, when the caller has listed them already."""
    keys = raw_parts(blob, hour) if keys is None else keys
    slices = plan_hour_slices([part_layout(key) for key in keys], window_seconds)
    tally = HourTally()

    def slice_windows():
        for piece in slices:
            readings = read_raw_parts((blob.read_bytes(keys[i]) for i in piece.parts), dictionary=True,
                                      after=_offset(hour, piece.after), until=_offset(hour, piece.until),
                                      repeats=tally.repeats)
            windows = window_means_table(readings, window_seconds)
            tally.add(readings, windows)
            del readings
            yield windows

    sql.replace_sensor_values_batches(hour, hour + HOUR, slice_windows())
    # Coverage is judged on what SQL holds, not on the windows just computed (which cover every
    # sender by construction): a device whose windows did not land is missing.
    in_sql = set(sql.devices_with_windows(hour, hour + HOUR))
    return {"aggregated": True, **tally.metadata(), "stored": list(sql.window_stats(hour, hour + HOUR)),
            "devices_missing": sorted(map(str, tally.sent - in_sql))}


def _offset(hour: pd.Timestamp, seconds: int | None) -> pd.Timestamp | None:
    return None if seconds is None else hour + pd.Timedelta(seconds=seconds)


def sensor_aggregates_condition(settings: Settings) -> dg.AutomationCondition:
    """An hour of the look-back whenever its raw readings were recorded again."""
    return updated_since_handled(settings).with_label("raw readings recorded")


def sensor_aggregates_asset(settings: Settings) -> dg.AssetsDefinition:
    """``sensor_aggregates`` on the hours from ``BSCORE_START``, with its automation condition."""
    return dg.asset(
        name="sensor_aggregates",
        partitions_def=hourly_partitions_def(settings),
        automation_condition=sensor_aggregates_condition(settings),
        freshness_policy=scoring_freshness_policy(settings),
        backfill_policy=dg.BackfillPolicy.single_run(),
        deps=["raw_readings"],
        check_specs=aggregate_check_specs,
        group_name="aggregation",
        kinds={"sql"},
        description="Average of each device's sensor per tumbling window (end as timestamp), SQL table sensor_values.",
    )(sensor_aggregates)


def sensor_aggregates(context: dg.AssetExecutionContext, blob: BlobStore, sql: SqlStore, pipeline: PipelineSettings):
    guard_step()
    with retry_on_outage(context):
        hours = hours_between(*window_bounds(context.partition_time_window))
        refuse_retired_hours(blob, "sensor_aggregates", hours)
        previous = latest_partition_metadata(context.instance, "sensor_aggregates", [hour_key(h) for h in hours])
        found = {}
        for hour in hours:
            key, parts = hour_key(hour), raw_parts(blob, hour)
            version = raw_version(parts)
            before = previous.get(key, {})
            # SQL is counted (a scan of the table) only when the rest says the hour is unchanged.
            unchanged = (before.get("raw_version") == version and before.get("window_seconds") == pipeline.window_seconds
                         and (stored := list(sql.window_stats(hour, hour + HOUR))) == [before.get("windows"),
                                                                                       before.get("readings")])
            if unchanged:
                found[key] = {"aggregated": False, **{k: before[k] for k in CARRIED if k in before},
                              "expected": stored, "stored": stored}
                context.log.info(f"{key}: raw readings unchanged since aggregation (raw version {version}); "
                                 "not aggregated again")
            else:
                found[key] = aggregate_hour(blob, sql, hour, pipeline.window_seconds, parts)
                context.log.info(f"{key}: {found[key]['readings']} readings -> {found[key]['windows']} windows")
            metadata = {k: found[key][k] for k in ("aggregated", *CARRIED) if k in found[key]}
            context.add_asset_metadata({**metadata, "raw_version": version, "window_seconds": pipeline.window_seconds},
                                       partition_key=key)
        aggregated = sum(1 for h in found.values() if h["aggregated"])
        context.log.info(f"{aggregated} hour(s) aggregated, {len(found) - aggregated} unchanged")
        yield dg.MaterializeResult(metadata={"table": "sensor_values"})
        yield from aggregate_check_results(found)
