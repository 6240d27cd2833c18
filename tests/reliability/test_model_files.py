"""Model files: a bundle whose arrays do not match their hash is refused and reported per
device; the rest of the fleet is still scored. (Pickles and skops files that would run code
are refused at import: tests/scoring/test_legacy.py, test_detectors.py, test_model_import.py.)"""

import pandas as pd
import pytest

from bscore_assets.operations import ChecksFailed
from scoring.model_store import current_version
from tests.assets.conftest import SCORE_START, TRAIN_START

HOUR = pd.Timedelta(hours=1)


def test_tampered_bundle_is_refused_and_reported_not_skipped_silently(trained):
    platform = trained
    blob = platform.resources["blob"]
    key = f"models/2/{current_version(blob, '2')}/params.npz"
    data = bytearray(blob.read_bytes(key))
    data[-100] ^= 0xFF
    blob.write_bytes(key, bytes(data))
    with pytest.raises(ChecksFailed, match="scoring_coverage") as failed:  # the CLI exits 1 naming it
        platform.score(SCORE_START, SCORE_START)
    coverage = failed.value.reports[-1].check("scoring_coverage")
    assert not coverage.passed and coverage.severity == "ERROR"
    refused = coverage.metadata["devices_model_refused"]
    assert list(refused) == ["2"] and "hashes to" in refused["2"]
    predictions = platform.resources["sql"].read_predictions(SCORE_START, SCORE_START + HOUR)
    assert sorted(predictions["device"].unique()) == ["1", "3"]


# Issue 11, cases 6 and 9: a bad model or current.json refuses its device only, on every store.

import pickle  # noqa: E402

import numpy as np  # noqa: E402

from bscore_assets.operations import Operations, local_instance  # noqa: E402
from bscore_assets.settings import Settings  # noqa: E402
from scoring.model_format import ModelBundle  # noqa: E402
from scoring.model_store import load_current_bundles  # noqa: E402
from tests.assets.conftest import land  # noqa: E402
from tests.conftest import postgres_database, sqlalchemy_postgres_url  # noqa: E402
from tests.forged_bundles import write_forged  # noqa: E402


def refused_scoring(platform):
    """Score the hour: a refused model fails ``scoring_coverage`` at ERROR (the CLI exits 1 naming
    it) after the rest of the fleet is stored; returns that check."""
    with pytest.raises(ChecksFailed, match="scoring_coverage") as failed:
        platform.score(SCORE_START, SCORE_START)
    return failed.value.reports[-1].check("scoring_coverage")


@pytest.fixture
def pg_platform(bscore_home, monkeypatch):
    from definitions import build_defs
    from scoring.simulate import simulate_readings

    with postgres_database("bscore_models") as name:
        monkeypatch.setenv("BSCORE_SQL_URL", sqlalchemy_postgres_url(name))
        settings = Settings.from_env()
        platform = Operations(settings, build_defs(settings), local_instance(settings))
        land(platform, pd.concat([simulate_readings(3, 5, TRAIN_START, 1, anomaly_rate=0.0, seed=11),
                                  simulate_readings(3, 5, SCORE_START, 1, anomaly_rate=0.01, seed=12)]))
        yield platform


def test_on_postgresql_a_nan_parameter_is_refused_at_import_and_at_load(pg_platform, tmp_path):
    platform = pg_platform
    platform.train(None, TRAIN_START, TRAIN_START, options={"kind": "svm"})  # pickles of SVM pipelines
    blob = platform.resources["blob"]
    trained = load_current_bundles(blob, ["2"])["2"]
    pipeline = trained.models["3"].to_pipeline()
    pipeline.steps[1][1].support_vectors_[0, 0] = np.nan
    (tmp_path / "model_2_3").write_bytes(pickle.dumps(pipeline))

    found = platform.import_models(tmp_path)  # refused at import: device 2 keeps its trained bundle

    assert not found.versions and "support_vectors holds NaN" in found.refused["model_2_3"]
    assert current_version(blob, "2") == trained.version
    # Written by something else, with matching hashes: refused at load.
    write_forged(blob, ModelBundle("2", "forged", trained.models), "3",
                 {"support_vectors": np.full(trained.models["3"].support_vectors.shape, np.nan)})

    coverage = refused_scoring(platform)
    assert not coverage.passed and coverage.severity == "ERROR"
    refused = coverage.metadata["devices_model_refused"]
    assert list(refused) == ["2"] and "sensor 3: support_vectors holds NaN" in refused["2"]
    predictions = platform.resources["sql"].read_predictions(SCORE_START, SCORE_START + HOUR)
    assert sorted(predictions["device"].unique()) == ["1", "3"] and len(predictions) == 2 * 5 * 720
    assert np.isfinite(predictions["score"]).all()


# (kind, damage): each kind's own parameters forged, and the bundle's pointer damaged.
DAMAGE = {
    "current.json naming a version whose files are gone": ("robust", lambda blob, bundle: blob.write_bytes(
        "models/2/current.json", b'{"version": "v-gone"}')),
    "truncated current.json": ("robust", lambda blob, bundle: blob.write_bytes(
        "models/2/current.json", b'{"version": ')),
    "robust: NaN threshold": ("robust", lambda blob, bundle: write_forged(blob, bundle, "1", {
        "params": np.array([0.0, np.nan, 1.0, 0.0, 1.0, 1.0])})),
    "robust: seven parameters": ("robust", lambda blob, bundle: write_forged(blob, bundle, "1", {
        "params": np.ones(7)})),
    "robust: lag past the limit": ("robust", lambda blob, bundle: write_forged(blob, bundle, "1", spec={"lag": 10**9})),
    "svm: two features": ("svm", lambda blob, bundle: write_forged(blob, bundle, "1", {
        "support_vectors": np.zeros((3, 2)), "mean": np.zeros(2), "scale": np.ones(2), "dual_coef": np.ones(3)})),
    "svm: huge poly degree": ("svm", lambda blob, bundle: write_forged(
        blob, bundle, "1", spec={"kernel": "poly", "degree": 10**9})),
    "svm: infinite intercept": ("svm", lambda blob, bundle: write_forged(
        blob, bundle, "1", spec={"intercept": float("inf")})),
}


@pytest.mark.parametrize("kind, damage", DAMAGE.values(), ids=DAMAGE.keys())
def test_one_bad_model_refuses_its_device_and_the_fleet_is_scored(trained_kind, kind, damage):
    platform = trained_kind(kind)
    blob = platform.resources["blob"]
    damage(blob, ModelBundle("2", "forged", load_current_bundles(blob, ["2"])["2"].models))

    refused = refused_scoring(platform).metadata["devices_model_refused"]
    assert list(refused) == ["2"] and refused["2"]
    predictions = platform.resources["sql"].read_predictions(SCORE_START, SCORE_START + HOUR)
    assert sorted(predictions["device"].unique()) == ["1", "3"] and len(predictions) == 2 * 5 * 720
