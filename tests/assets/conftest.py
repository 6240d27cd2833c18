"""A platform on a temporary BSCORE_HOME, and simulated readings landed in its event source.

Most tests of a whole platform start from the same few states (the simulated fleet landed, its
models trained, its scoring hour scored), and reaching one costs several Dagster runs. Each state
is built once per session in a home of its own (``PlatformStates``); a test that starts there gets
a copy of that home (files: SQLite, blob folder, landing, the Dagster instance), so it may change
it freely and no test sees another's changes. A test that checks how a state is reached builds
it itself (``platform`` + ``simulated``).
"""

import functools
import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

from bscore_assets.operations import Operations, RunReport, local_instance
from bscore_assets.settings import Settings
from scoring.readings import readings_to_event_bodies
from scoring.simulate import simulate_readings

TRAIN_START = pd.Timestamp("2026-03-01T00:00")
SCORE_START = pd.Timestamp("2026-03-01T01:00")


def build_platform() -> Operations:
    """The platform of the current environment's settings (``BSCORE_HOME``)."""
    from definitions import build_defs

    settings = Settings.from_env()
    return Operations(settings, build_defs(settings), local_instance(settings))


@pytest.fixture
def platform(bscore_home) -> Operations:
    return build_platform()


def land(platform: Operations, readings: pd.DataFrame) -> None:
    platform.resources["events"].publish(readings_to_event_bodies(readings))


@functools.cache
def _simulated_readings() -> pd.DataFrame:
    training = simulate_readings(3, 5, TRAIN_START, 1, anomaly_rate=0.0, seed=11)
    scoring = simulate_readings(3, 5, SCORE_START, 1, anomaly_rate=0.01, seed=12)
    return pd.concat([training, scoring], ignore_index=True)


def simulated_readings() -> pd.DataFrame:
    """One clean training hour and one scoring hour with 1% planted anomalies, 3 x 5 fleet."""
    return _simulated_readings().copy()


@pytest.fixture
def simulated(platform):
    """One clean training hour and one scoring hour with 1% planted anomalies, 3 x 5 fleet."""
    readings = simulated_readings()
    land(platform, readings)
    return readings


def _trained(kind: str | None):
    def make(platform: Operations) -> list[RunReport]:
        land(platform, simulated_readings())
        return platform.train(None, TRAIN_START, TRAIN_START, options={"kind": kind} if kind else None)

    return make


def _scored(platform: Operations) -> list[RunReport]:
    return platform.score(SCORE_START, SCORE_START)


def state_steps(name: str):
    """The state ``name`` builds on (None: an empty home), and what brings a platform from there.

    ``trained``: ``simulated_readings()`` landed, every device trained on TRAIN_START;
    ``trained-<kind>``: the same with ``options={"kind": kind}``; ``scored``: ``trained``, then
    SCORE_START scored (its aggregates refreshed first)."""
    if name == "scored":
        return "trained", _scored
    if name == "trained" or name.startswith("trained-"):
        return None, _trained(name.removeprefix("trained").removeprefix("-") or None)
    raise KeyError(name)


class PlatformStates:
    """Homes of platforms brought to a named state once per session, copied for each test."""

    def __init__(self, root: Path):
        self.root = root
        self.reports: dict[str, list[RunReport]] = {}

    def _home(self, name: str) -> Path:
        home = self.root / name
        if name not in self.reports:
            base, step = state_steps(name)
            with pytest.MonkeyPatch.context() as env:  # the local defaults, in a home of its own
                for variable in [v for v in os.environ if v.startswith("BSCORE_")]:
                    env.delenv(variable)
                env.setenv("BSCORE_HOME", str(home))
                if base is not None:
                    shutil.copytree(self._home(base), home)
                platform = build_platform()
                try:
                    self.reports[name] = step(platform)
                except BaseException:
                    shutil.rmtree(home, ignore_errors=True)  # the next test that asks builds it again
                    raise
                finally:
                    platform.instance.dispose()
        return home

    def restore(self, name: str, home: Path) -> tuple[Operations, list[RunReport]]:
        """A platform at ``home`` (the test's ``BSCORE_HOME``) in state ``name``, and the reports
        of the runs that brought the state's own home there."""
        shutil.copytree(self._home(name), home)
        assert os.environ["BSCORE_HOME"] == str(home)
        return build_platform(), self.reports[name]


@pytest.fixture
def trained(platform_states, bscore_home) -> Operations:
    """A copy of the platform with ``simulated_readings()`` landed and every device's model
    trained on TRAIN_START (the default kind); SCORE_START not aggregated or scored yet."""
    return platform_states.restore("trained", bscore_home)[0]


@pytest.fixture
def scored(platform_states, bscore_home) -> tuple[Operations, list[RunReport]]:
    """A copy of ``trained`` with SCORE_START scored, and the reports of that ``score`` (its
    ingest run, then its scoring run)."""
    return platform_states.restore("scored", bscore_home)


@pytest.fixture
def trained_kind(platform_states, bscore_home):
    """``trained_kind(kind)``: a copy of the platform with every device trained with ``kind``."""
    return lambda kind: platform_states.restore(f"trained-{kind}", bscore_home)[0]


def forget_scoring_inputs(platform: Operations) -> None:
    """Make the prediction manifests look written by a version that did not record their inputs,
    so that the next run scores the hours again although nothing changed."""
    blob = platform.resources["blob"]
    for key in blob.list("predictions/"):
        if key.endswith("/_manifest.json"):
            blob.write_bytes(key, json.dumps({**json.loads(blob.read_bytes(key)), "inputs": None}).encode())
