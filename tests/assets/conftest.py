"""A platform on a temporary BSCORE_HOME, and simulated readings landed in its event source."""

import json

import pandas as pd
import pytest

from bscore_assets.operations import Operations, local_instance
from bscore_assets.settings import Settings
from scoring.readings import readings_to_event_bodies
from scoring.simulate import simulate_readings

TRAIN_START = pd.Timestamp("2026-03-01T00:00")
SCORE_START = pd.Timestamp("2026-03-01T01:00")


@pytest.fixture
def platform(bscore_home) -> Operations:
    from definitions import build_defs

    settings = Settings.from_env()
    return Operations(settings, build_defs(settings), local_instance(settings))


def land(platform: Operations, readings: pd.DataFrame) -> None:
    platform.resources["events"].publish(readings_to_event_bodies(readings))


@pytest.fixture
def simulated(platform):
    """One clean training hour and one scoring hour with 1% planted anomalies, 3 x 5 fleet."""
    training = simulate_readings(3, 5, TRAIN_START, 1, anomaly_rate=0.0, seed=11)
    scoring = simulate_readings(3, 5, SCORE_START, 1, anomaly_rate=0.01, seed=12)
    readings = pd.concat([training, scoring], ignore_index=True)
    land(platform, readings)
    return readings


def forget_scoring_inputs(platform: Operations) -> None:
    """Make the prediction manifests look written by a version that did not record their inputs,
    so that the next run scores the hours again although nothing changed."""
    blob = platform.resources["blob"]
    for key in blob.list("predictions/"):
        if key.endswith("/_manifest.json"):
            blob.write_bytes(key, json.dumps({**json.loads(blob.read_bytes(key)), "inputs": None}).encode())
