"""One scoring shard, run where its data is: read its devices' windows, score, write predictions.

The orchestrator decides only names (``scoring.shards.ShardTask``: devices, hours, sensors,
the run's token); the task, in a local worker process or an Azure ML job, reads its own
devices' windows from the SQL store, loads their current bundles (a bad bundle refuses its own
device only), scores them with ``scoring.engine.score_shard`` and writes the predictions
itself, as one blob Parquet part per partition, named by its devices and the run. It returns a
summary per (hour, sensor) partition whose size does not grow with rows: counts, per-device
counts and model versions, devices missing a model or refused. Once every shard succeeded the
run publishes each hour to SQL (one transaction per hour) and commits each partition's
manifest, so a failed shard leaves no partial hour in either place.

With ``task.stage_in_sql`` (the Azure ML jobs) the task also stages its predictions in SQL under
the run's token, and the run publishes each hour from there on the database server, so no
prediction row passes through the run's process.

No Dagster here: ``store`` is anything with ``read_sensor_values(start, end, devices=, sensors=)``
(and ``stage_predictions``, ``scoring.shard_sql.ShardSql``, for a task that stages);
``blobs`` has the model store's protocol plus ``write_bytes``.
"""

from __future__ import annotations

import time

import pandas as pd

from scoring.blob_layout import prediction_part_key
from scoring.engine import BundleModels, score_shard
from scoring.model_store import load_current_bundles_or_refusals
from scoring.parquet import to_parquet_bytes
from scoring.shard_summary import ShardPartition, ShardSummary, ShardTimings
from scoring.shards import ShardTask
from scoring.time_units import HOUR

# Kinds that judge a window by its recent past (the robust kind: up to 60 windows, 5 minutes of
# 5 s windows) see the minutes before the shard's first hour too, so its first windows are
# judged like the rest; those windows are context, not scored again.
CONTEXT = pd.Timedelta(minutes=6)


def partition_summary(hour, sensor, windows: pd.DataFrame, predictions: pd.DataFrame,
                      refused: dict[str, str], part: str | None) -> ShardPartition:
    """What one shard reports of one (hour, sensor) partition: counts, never rows."""
    had = windows["device"].astype(str)
    scored_devices = predictions["device"].astype(str)
    anomalies = predictions["is_anomaly"].to_numpy(dtype=bool)
    per_device = (pd.DataFrame({"device": scored_devices.to_numpy(), "anomaly": anomalies})
                  .groupby("device", sort=True)["anomaly"].agg(["size", "sum"]))
    versions = (pd.DataFrame({"device": scored_devices.to_numpy(),
                              "version": predictions["model_version"].astype(str).to_numpy()})
                .groupby("device", sort=True)["version"].first())
    with_windows = set(had.unique())
    return ShardPartition(
        hour=pd.Timestamp(hour),
        sensor=str(sensor),
        windows=int(len(windows)),
        rows_scored=int(len(predictions)),
        anomalies=int(anomalies.sum()),
        devices={str(d): (int(n), int(a)) for d, (n, a) in per_device.iterrows()},
        model_versions={str(d): str(v) for d, v in versions.items()},
        devices_with_windows=tuple(sorted(with_windows)),
        devices_missing_model=tuple(sorted(with_windows - set(per_device.index) - set(refused))),
        devices_refused=tuple(sorted(with_windows & set(refused))),
        part=part,
    )


def run_shard_task(task: ShardTask, store, blobs) -> ShardSummary:
    """Score the shard ``task`` names and write its predictions; return its summary.

    Parameters
    ----------
    task : ShardTask
        The shard's devices, hours, sensors and the run's token.
    store
        The SQL store the windows are read from.
    blobs
        Blob storage holding the model bundles and receiving the prediction parts.

    Returns
    -------
    ShardSummary
        Totals and timings, one ``ShardPartition`` per (hour, sensor) of the task (with the
        blob part it wrote), the devices refused with why, and the series without a model.
    """
    timings = {"read": 0.0, "load": 0.0, "score": 0.0, "write": 0.0}
    bundles, unloadable, refused = {}, {}, {}
    compiled = BundleModels({})
    totals = {"rows": 0, "rows_scored": 0, "anomalies": 0}
    summaries, missing = [], []
    # One hour at a time (with its context): a backfill's worker holds one hour of its shard,
    # not all of them, and each hour scores as it would alone.
    for hour in sorted(task.hours):
        started = time.perf_counter()
        hour_start = pd.Timestamp(hour)
        windows = store.read_sensor_values(hour_start - CONTEXT, hour_start + HOUR, devices=list(task.devices),
                                           sensors=list(task.sensors))
        read = time.perf_counter()
        devices = windows["device"].astype(str)
        new_devices = sorted(set(devices.unique()) - set(bundles) - set(unloadable))
        loaded_bundles, load_refusals = load_current_bundles_or_refusals(blobs, new_devices)
        if loaded_bundles:  # compiled again only when the hour brings devices not seen before
            bundles.update(loaded_bundles)
            compiled = BundleModels(bundles)
        unloadable.update(load_refusals)
        loaded = time.perf_counter()
        # A refused device's rows are not scored, and not reported as missing a model either:
        # they are in the refusals, with the reason.
        kept = windows if not unloadable else windows[~devices.isin(list(unloadable))].reset_index(drop=True)
        scores = score_shard(kept, compiled, context_until=hour_start)
        # A device whose model failed while scoring this hour is refused in it, with the scorer's reason.
        hour_refused = {**unloadable, **dict(zip(scores.refused["device"].astype(str), scores.refused["reason"]))}
        refused.update(hour_refused)
        scored = time.perf_counter()
        predictions = scores.predictions
        windows = windows[windows["ts"] > hour_start]
        totals["rows"] += len(windows)
        totals["rows_scored"] += len(predictions)
        totals["anomalies"] += int(predictions["is_anomaly"].sum())
        missing.append(scores.missing_models)
        summaries.extend(_write_hour(task, hour_start, windows, predictions, hour_refused, blobs))
        if task.stage_in_sql:  # the same rows as the hour's parts
            store.stage_predictions(task.run, task.devices, hour_start, hour_start + HOUR, [predictions])
        written = time.perf_counter()
        for step, seconds in zip(timings, (read - started, loaded - read, scored - loaded, written - scored)):
            timings[step] += seconds
    missing_models = (pd.concat(missing, ignore_index=True).groupby(["device", "sensor"], sort=True, observed=True)
                      ["rows"].sum().reset_index() if missing else pd.DataFrame(columns=["device", "sensor", "rows"]))
    return ShardSummary(
        shard=task.label,
        devices=len(task.devices),
        rows=int(totals["rows"]),
        rows_scored=int(totals["rows_scored"]),
        anomalies=int(totals["anomalies"]),
        models=sum(len(b.models) for b in bundles.values()),
        partitions=tuple(summaries),
        devices_refused=dict(sorted(refused.items())),
        missing_models=tuple((str(d), str(s), int(n)) for d, s, n in
                             missing_models[["device", "sensor", "rows"]].itertuples(index=False)),
        timings=ShardTimings(*(round(seconds, 3) for seconds in timings.values())),
    )


def _write_hour(task: ShardTask, hour: pd.Timestamp, windows: pd.DataFrame, predictions: pd.DataFrame,
                refused: dict[str, str], blobs) -> list[ShardPartition]:
    """One Parquet part per sensor of the hour with predictions, and each partition's summary."""
    summaries = []
    first, last = task.devices[0], task.devices[-1]
    sensor_of_rows = predictions["sensor"].astype(str)
    sensor_of_windows = windows["sensor"].astype(str)
    for sensor in task.sensors:
        rows = predictions[(sensor_of_rows == sensor).to_numpy()].reset_index(drop=True)
        key = prediction_part_key(hour, sensor, first, last, task.run) if len(rows) else None
        if key:
            blobs.write_bytes(key, to_parquet_bytes(rows))
        had = windows[(sensor_of_windows == sensor).to_numpy()]
        summaries.append(partition_summary(hour, sensor, had, rows, refused, key))
    return summaries
