"""Model files: a bundle whose arrays do not match their hash is refused and reported per
device; the rest of the fleet is still scored. (Pickles and skops files that would run code
are refused at import: tests/scoring/test_legacy.py, test_detectors.py, test_model_import.py.)"""

import pandas as pd
import pytest

from bscore_assets.operations import ChecksFailed
from scoring.model_store import current_version
from tests.assets.conftest import SCORE_START, TRAIN_START

HOUR = pd.Timedelta(hours=1)


def test_tampered_bundle_is_refused_and_reported_not_skipped_silently(platform, simulated):
    platform.train(None, TRAIN_START, TRAIN_START)
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
