"""Backfills launched through the Dagster instance and run by the daemon's backfill iteration.

The workspace is the one ``dagster-webserver`` loads (``workspace.yaml``); runs launch
synchronously in this process. Every asset has ``BackfillPolicy.single_run()``: an hourly
or per-device backfill is one run. The hour x sensor asset's backfill is ``min(H, S)``
runs: Dagster 1.13 turns a multi-partition subset into key ranges by holding its smaller
dimension constant (``DefaultPartitionsSubset.get_partition_key_ranges``), so each run is
one sensor's H hours (or one hour's S sensors), never one run per partition.
"""

import logging
import time
import uuid
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from dagster._core.execution.backfill import BulkActionStatus, PartitionBackfill
from dagster._core.test_utils import create_test_daemon_workspace_context
from dagster._core.workspace.load_target import WorkspaceFileTarget
from dagster._daemon.backfill import execute_backfill_iteration

from bscore_assets.ingestion.fleet import register_fleet
from bscore_assets.partitions import hour_key, hour_sensor_key
from bscore_assets.runs import RANGE_END_TAG, RANGE_START_TAG
from bscore_assets.settings import Settings
from definitions import build_defs
from scoring.readings import readings_to_event_bodies
from scoring.simulate import simulate_readings

WORKSPACE = Path(__file__).resolve().parents[2] / "workspace.yaml"
HOUR = pd.Timedelta(hours=1)
TRAIN_HOUR = pd.Timestamp("2026-03-01T00:00")
H, SENSORS, DEVICES = 3, ["1", "2"], ["1", "2"]
SCORE_HOURS = [TRAIN_HOUR + HOUR * (1 + n) for n in range(H)]
IN_PROCESS = {"execution": {"config": {"in_process": {}}}}  # a run's step in the run's process: faster here


def backfill(workspace, instance, defs, assets: list[str], keys: list[str], run_config=None) -> list[dg.DagsterRun]:
    """Launch a backfill of ``assets`` x ``keys`` and iterate the daemon until it is done; its runs."""
    backfill_id = uuid.uuid4().hex[:8]
    instance.add_backfill(PartitionBackfill.from_asset_partitions(
        backfill_id=backfill_id, asset_graph=defs.resolve_asset_graph(), partition_names=keys,
        asset_selection=[dg.AssetKey(a) for a in assets], backfill_timestamp=time.time(), tags={},
        dynamic_partitions_store=instance, all_partitions=False, title=None, description=None,
        run_config={**IN_PROCESS, **(run_config or {})},
    ))
    for _ in range(10):
        list(execute_backfill_iteration(workspace, logging.getLogger("backfill")))
        status = instance.get_backfill(backfill_id).status
        if status != BulkActionStatus.REQUESTED:
            break
    assert status == BulkActionStatus.COMPLETED_SUCCESS
    return instance.get_runs(filters=dg.RunsFilter(tags={"dagster/backfill": backfill_id}))


def covered(run: dg.DagsterRun) -> tuple[str, str]:
    return run.tags[RANGE_START_TAG], run.tags[RANGE_END_TAG]


@pytest.fixture
def platform(bscore_home):
    # Runs launch in this process from the code location, which reads this test's BSCORE_HOME
    # each time it is loaded (`definitions.defs`), whoever imported the module before.
    dagster_home = bscore_home / "dagster"
    dagster_home.mkdir(parents=True)
    defs = build_defs(Settings.from_env())
    with dg.instance_for_test(temp_dir=str(dagster_home), synchronous_run_launcher=True,
                              synchronous_run_coordinator=True) as instance:
        with create_test_daemon_workspace_context(WorkspaceFileTarget(paths=[str(WORKSPACE)]), instance) as workspace:
            yield defs, instance, workspace


def test_backfills_run_few_runs_and_materialize_every_partition(platform):
    defs, instance, workspace = platform
    training = simulate_readings(len(DEVICES), len(SENSORS), TRAIN_HOUR, 1, anomaly_rate=0.0, seed=21)
    scoring = simulate_readings(len(DEVICES), len(SENSORS), SCORE_HOURS[0], H, anomaly_rate=0.01, seed=22)
    defs.resources["events"].publish(readings_to_event_bodies(pd.concat([training, scoring], ignore_index=True)))
    hours = [hour_key(h) for h in [TRAIN_HOUR, *SCORE_HOURS]]

    [ingest] = backfill(workspace, instance, defs, ["raw_readings", "sensor_aggregates"], hours)
    assert covered(ingest) == (hours[0], hours[-1])
    assert instance.get_materialized_partitions(dg.AssetKey("sensor_aggregates")) == set(hours)
    register_fleet(instance, defs.resources["sql"])

    window = {"from_hour": TRAIN_HOUR.isoformat(), "to_hour": TRAIN_HOUR.isoformat()}
    [train] = backfill(workspace, instance, defs, ["device_models"], DEVICES,
                       run_config={"ops": {"device_models": {"config": window}}})
    assert covered(train) == (DEVICES[0], DEVICES[-1])

    keys = [hour_sensor_key(h, s) for h in SCORE_HOURS for s in SENSORS]
    runs = backfill(workspace, instance, defs, ["sensor_predictions"], keys)
    assert len(runs) == min(H, len(SENSORS)) < len(keys)
    assert sorted(covered(r) for r in runs) == [
        (f"{hour_key(SCORE_HOURS[0])}|{s}", f"{hour_key(SCORE_HOURS[-1])}|{s}") for s in SENSORS
    ]
    assert instance.get_materialized_partitions(dg.AssetKey("sensor_predictions")) == set(keys)
    predictions = defs.resources["sql"].read_predictions(SCORE_HOURS[0], SCORE_HOURS[-1] + HOUR)
    assert len(predictions) == len(DEVICES) * len(SENSORS) * 720 * H
    assert predictions.groupby(["sensor"])["ts"].nunique().to_dict() == {s: 720 * H for s in SENSORS}
