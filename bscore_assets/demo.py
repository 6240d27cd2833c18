"""``bscore demo``: the whole job on embedded defaults, and how well it found the planted anomalies."""

from __future__ import annotations

import pandas as pd

from bscore_assets.operations import Operations
from scoring.anomaly_labels import label_mask, labels_from_planted, write_labels_csv
from scoring.readings import readings_to_event_bodies
from scoring.simulate import simulate_fleet, simulate_readings
from scoring.windows import window_ends
from scoring.time_units import HOUR

PUBLISH_CHUNK = 50_000


def planted_windows(readings: pd.DataFrame, window_seconds: int) -> pd.DataFrame:
    """Ground truth per window: does it hold a planted anomaly."""
    keyed = readings.assign(ts=window_ends(readings["ts"], window_seconds))
    return keyed.groupby(["device", "sensor", "ts"])["planted"].any().reset_index()


def detection_summary(predictions: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    """Per sensor: windows scored, flagged, planted, precision, recall and false-alarm rate
    (flagged windows without a planted anomaly / all windows without one)."""
    merged = predictions.merge(truth, on=["device", "sensor", "ts"], how="left")
    merged["planted"] = merged["planted"].fillna(False).astype(bool)
    rows = []
    for sensor, group in merged.groupby("sensor", sort=True):
        flagged, planted = group["is_anomaly"], group["planted"]
        hits = int((flagged & planted).sum())
        rows.append(
            {
                "sensor": sensor,
                "windows_scored": len(group),
                "anomalies_flagged": int(flagged.sum()),
                "planted": int(planted.sum()),
                "precision": round(hits / flagged.sum(), 3) if flagged.sum() else float("nan"),
                "recall": round(hits / planted.sum(), 3) if planted.sum() else float("nan"),
                "false_alarm_rate": round(int((flagged & ~planted).sum()) / (~planted).sum(), 4)
                if (~planted).sum() else float("nan"),
            }
        )
    return pd.DataFrame(rows)


def demo_fleet(profile: str, devices: int, sensors: int, start: pd.Timestamp, train_hours: int, score_hours: int,
               anomaly_rate: float, seed: int, window: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Clean training hours then scored hours with planted anomalies: readings (with ``planted``) and labels."""
    if profile == "uniform":
        split = start + pd.Timedelta(hours=train_hours)
        training = simulate_readings(devices, sensors, start, train_hours, 0.0, window_seconds=window, seed=seed)
        scoring = simulate_readings(devices, sensors, split, score_hours, anomaly_rate, window_seconds=window, seed=seed + 1)
        return pd.concat([training, scoring], ignore_index=True), labels_from_planted(scoring, 1.0, window)
    # One continuous fleet: regimes, daily cycles and drift run on from the training hours into the scored ones.
    fleet = simulate_fleet(devices, sensors, start, score_hours, anomaly_rate, seed=seed, train_hours=train_hours)
    return fleet.readings.assign(planted=label_mask(fleet.readings, fleet.labels)), fleet.labels


def run_demo(ops: Operations, devices: int, sensors: int, train_hours: int, score_hours: int,
             anomaly_rate: float, seed: int, echo=print, profile: str = "realistic") -> pd.DataFrame:
    """Simulate, ingest, train on the first hours, score the rest; return the per-sensor summary."""
    end = pd.Timestamp.now("UTC").tz_localize(None).floor("h")
    start = end - pd.Timedelta(hours=train_hours + score_hours)
    split = start + pd.Timedelta(hours=train_hours)
    window = ops.resources["pipeline"].window_seconds
    echo(f"Simulating {devices} devices x {sensors} {profile} sensors, {start:%Y-%m-%dT%H}..{end - HOUR:%Y-%m-%dT%H}"
         f" ({train_hours} clean training hour(s), then {score_hours} with {anomaly_rate:.1%} planted anomalies)")
    readings, labels = demo_fleet(profile, devices, sensors, start, train_hours, score_hours, anomaly_rate, seed, window)
    truth = planted_windows(readings[readings["ts"] > split], window)
    ops.settings.home.mkdir(parents=True, exist_ok=True)
    truth.to_parquet(ops.settings.home / "demo_truth.parquet")
    write_labels_csv(labels, ops.settings.home / "demo_labels.csv")
    kinds = ", ".join(f"{n} {kind}" for kind, n in labels["kind"].value_counts().items())
    echo(f"Planted {len(labels)} anomalies ({kinds or 'none'}); labels in {ops.settings.home / 'demo_labels.csv'}")
    bodies = readings_to_event_bodies(readings)
    for i in range(0, len(bodies), PUBLISH_CHUNK):
        ops.resources["events"].publish(bodies[i : i + PUBLISH_CHUNK])
    echo(f"Published {len(bodies):,} readings to {ops.resources['events'].describe()}")
    last = end - HOUR
    ops.ingest_hours(start, last)
    echo("Ingested and aggregated into SQL sensor_values")
    ops.train(None, start, split - HOUR, refresh=False)
    echo("Trained device models")
    ops.score_and_vote(split, last, refresh=False)
    echo("Scored every sensor and " + ("voted device verdicts" if ops.resources["pipeline"].device_verdict == "vote"
                                       else "judged device verdicts by each device's multivariate model"))
    predictions = ops.resources["sql"].read_predictions(split, end)
    return detection_summary(predictions, truth)
