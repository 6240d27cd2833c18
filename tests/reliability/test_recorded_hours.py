"""What is recorded about an hour stays true: late readings a run drains re-open their hour,
a new landing cannot overwrite earlier raw parts, and a ranged run's events stay small."""

import dagster as dg
import pandas as pd

from bscore_assets.ingestion.sensors import changed_raw_hours
from bscore_assets.operations import Operations
from bscore_assets.storage import read_raw_hour
from resources.events import LocalEventSource
from scoring.readings import readings_to_event_bodies
from scoring.simulate import simulate_readings
from tests.assets.conftest import SCORE_START, TRAIN_START, land

HOUR = pd.Timedelta(hours=1)


def test_late_readings_drained_by_a_run_are_aggregated(platform: Operations, simulated):
    """Issue 11 case 2: a run (not a sensor) drains late readings; the hour must not keep its old windows."""
    platform.ingest_hours(TRAIN_START, TRAIN_START)
    late = simulate_readings(1, 1, TRAIN_START + pd.Timedelta(minutes=10), 1 / 60, 0.0, seed=8).assign(device="7")
    land(platform, late)
    platform.ingest_hours(SCORE_START, SCORE_START)  # the next hour's run drains them
    blob = platform.resources["blob"]
    assert list(changed_raw_hours(platform.instance, blob, [TRAIN_START, SCORE_START])) == [TRAIN_START]
    report = platform.ingest_hours(TRAIN_START, TRAIN_START)  # what late_readings_sensor requests
    assert report.statuses["sensor_aggregates.aggregated=True"] == 1
    windows = platform.resources["sql"].read_sensor_values(TRAIN_START, TRAIN_START + HOUR, devices=["7"])
    assert windows["readings"].sum() == len(late)
    assert not changed_raw_hours(platform.instance, blob, [TRAIN_START, SCORE_START])


def test_unchanged_hour_is_not_aggregated_again(platform: Operations, simulated):
    platform.ingest_hours(TRAIN_START, SCORE_START)
    again = platform.ingest_hours(TRAIN_START, SCORE_START)
    assert again.statuses == {"sensor_aggregates.aggregated=False": 2}
    assert again.totals["sensor_aggregates.windows"] == 2 * 3 * 5 * 720  # the partitions still say what is stored


def test_a_new_landing_cannot_overwrite_earlier_raw_parts(platform: Operations, simulated, tmp_path):
    """Issue 11 case 3: parts were named after the landing's sequence numbers."""
    platform.ingest_hours(TRAIN_START, TRAIN_START)
    blob = platform.resources["blob"]
    before = len(read_raw_hour(blob, TRAIN_START))
    # The landing folder is re-created (or a second landing feeds the same blob store): its
    # sequence numbers start again at 1.
    fresh = LocalEventSource(landing=str(tmp_path / "new-landing"))
    one = simulate_readings(1, 1, TRAIN_START + pd.Timedelta(minutes=20), 1 / 3600, 0.0, seed=9).assign(device="8")
    fresh.publish(readings_to_event_bodies(one))
    from bscore_assets.ingestion.drain import drain_events

    drain_events(fresh, blob)
    assert len(read_raw_hour(blob, TRAIN_START)) == before + 1


def test_ranged_run_events_do_not_repeat_the_run_per_partition(platform: Operations, bscore_home):
    """Issue 11 case 13: each partition's event carried the whole run's table."""
    hours = 12
    readings = simulate_readings(1, 2, TRAIN_START, hours, anomaly_rate=0.0, seed=10)
    land(platform, readings)
    platform.train(None, TRAIN_START, TRAIN_START + HOUR)
    report, *_ = platform.score(TRAIN_START, TRAIN_START + HOUR * (hours - 1))[-1:]
    records = platform.instance.fetch_materializations(dg.AssetKey("sensor_predictions"), limit=1000).records
    sizes = [len(str(r.asset_materialization.metadata)) for r in records if r.run_id == report.run_id]
    assert len(sizes) == hours * 2
    # Bounded per partition (a plot is about 65 kB of PNG), and no partition's event names other hours.
    assert max(sizes) < 100_000
    plain = [r for r in records if r.run_id == report.run_id and "plot" not in r.asset_materialization.metadata]
    assert plain and max(len(str(r.asset_materialization.metadata)) for r in plain) < 2_000
    for record in plain:
        own = record.asset_materialization.partition.split("|")[0]
        others = {f"{TRAIN_START + HOUR * n:%Y-%m-%d-%H:%M}" for n in range(hours)} - {own}
        assert not any(key in str(record.asset_materialization.metadata) for key in others)
