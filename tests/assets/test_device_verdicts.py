"""``device_verdicts`` after ``bscore score``'s flow: the stored verdicts are the vote applied to
the stored predictions (or, with ``BSCORE_DEVICE_VERDICT=multivariate``, each device's device
model applied to the stored window values), in SQL and in blob, and the run reports them."""

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from bscore_assets.cli import _describe
from scoring.blob_layout import verdicts_key
from scoring.model_store import load_bundle
from scoring.parquet import from_parquet_bytes
from scoring.verdicts import parse_contributions
from tests.assets.conftest import SCORE_START, forget_scoring_inputs

VOTE_COLUMNS = ["ts", "device", "is_anomaly", "sensors_scored", "sensors_flagged", "flagged_sensors"]

HOUR = pd.Timedelta(hours=1)


def voted_by_hand(predictions: pd.DataFrame, min_sensors: int) -> pd.DataFrame:
    """The rule, applied without the library: a device window is anomalous when at least
    ``min_sensors`` of its sensors are flagged."""
    rows = []
    for (device, ts), group in predictions.groupby(["device", "ts"], sort=True):
        flagged = sorted(group.loc[group["is_anomaly"], "sensor"])
        rows.append({"ts": ts, "device": device, "is_anomaly": len(flagged) >= min_sensors,
                     "sensors_scored": len(group), "sensors_flagged": len(flagged),
                     "flagged_sensors": ",".join(flagged)})
    return pd.DataFrame(rows)


def test_verdicts_are_the_vote_over_the_stored_predictions(trained):
    platform = trained
    *_, scoring, voting = platform.score_and_vote(SCORE_START, SCORE_START)
    sql, blob = platform.resources["sql"], platform.resources["blob"]
    predictions = sql.read_predictions(SCORE_START, SCORE_START + HOUR)
    expected = voted_by_hand(predictions, platform.resources["pipeline"].device_vote_min_sensors)
    assert len(expected) == 3 * 720 and expected["is_anomaly"].any() and not expected["is_anomaly"].all()

    stored = sql.read_device_verdicts(SCORE_START, SCORE_START + HOUR)
    pd.testing.assert_frame_equal(stored[VOTE_COLUMNS], expected, check_dtype=False)
    assert (stored["method"] == "vote").all() and (stored["score"] == stored["sensors_flagged"]).all()
    parquet = from_parquet_bytes(blob.read_bytes(verdicts_key(SCORE_START)))
    pd.testing.assert_frame_equal(parquet, stored, check_dtype=False)
    assert "voted by their sensors" in _describe(voting)

    assert (scoring.job, voting.job) == ("scoring_job", "verdicts_job")
    assert voting.totals == {"device_verdicts.device_windows": len(expected),
                             "device_verdicts.anomalous_device_windows": int(expected["is_anomaly"].sum())}
    check = voting.check("device_anomaly_rate")
    assert check.passed and check.metadata["max_device_anomaly_rate"] == round(expected["is_anomaly"].mean(), 4)

    # Rescoring one sensor votes the hour again over every sensor: nothing changes.
    platform.score_and_vote(SCORE_START, SCORE_START, sensors=["2"])
    pd.testing.assert_frame_equal(sql.read_device_verdicts(SCORE_START, SCORE_START + HOUR), stored)
    assert pq.read_schema(pa.BufferReader(blob.read_bytes(verdicts_key(SCORE_START)))).names == list(stored)


def test_multivariate_verdicts_are_each_device_model_on_the_stored_values(platform_states, bscore_home, monkeypatch):
    monkeypatch.setenv("BSCORE_DEVICE_VERDICT", "multivariate")
    platform = platform_states.restore("trained", bscore_home)[0]
    *_, voting = platform.score_and_vote(SCORE_START, SCORE_START)
    sql, blob = platform.resources["sql"], platform.resources["blob"]
    predictions = sql.read_predictions(SCORE_START, SCORE_START + HOUR)
    stored = sql.read_device_verdicts(SCORE_START, SCORE_START + HOUR)
    assert len(stored) == 3 * 720 and (stored["method"] == "multivariate").all()

    for device, rows in predictions.groupby("device"):
        (version,) = rows["model_version"].unique()
        model = load_bundle(blob, device, version).device_model
        values = rows.pivot(index="ts", columns="sensor", values="value")[list(model.sensors)].sort_index()
        z = (values.to_numpy() - model.center) / model.scale - model.mean  # the model by hand
        t = z @ model.components.T
        spe = ((z - t @ model.components) ** 2).sum(axis=1)
        score = np.maximum(spe / model.spe_threshold, (t ** 2 / model.variances).sum(axis=1) / model.t2_threshold)
        mine = stored[stored["device"] == device].sort_values("ts")
        np.testing.assert_allclose(mine["score"], score, rtol=1e-9)
        assert (mine["is_anomaly"].to_numpy() == (score > 1)).all()
        shares = [parse_contributions(text) for text in mine["contributions"]]
        assert all(set(share) == set(model.sensors) and abs(sum(share.values()) - 1) < 0.01 for share in shares)
    assert 0 < stored["is_anomaly"].sum() < len(stored)
    summary = _describe(voting)
    assert "multivariate model" in summary and "voted" not in summary


def test_a_rescore_that_changed_nothing_rewrites_no_verdicts(trained):
    platform = trained
    *_, first = platform.score_and_vote(SCORE_START, SCORE_START)
    sql, blob = platform.resources["sql"], platform.resources["blob"]
    stored = sql.read_device_verdicts(SCORE_START, SCORE_START + HOUR)
    path = blob.blobs().root / verdicts_key(SCORE_START)
    written = path.stat().st_mtime_ns
    with sql.engine.begin() as conn:  # a marker the hour's replace would remove
        conn.exec_driver_sql("UPDATE device_verdicts SET flagged_sensors = 'untouched' WHERE (ts, device) = "
                             "(SELECT ts, device FROM device_verdicts ORDER BY ts, device LIMIT 1)")

    *_, again = platform.score_and_vote(SCORE_START, SCORE_START)

    assert path.stat().st_mtime_ns == written
    after = sql.read_device_verdicts(SCORE_START, SCORE_START + HOUR)
    assert (after["flagged_sensors"] == "untouched").sum() == 1 and len(after) == len(stored)
    assert again.totals == first.totals and again.check("device_anomaly_rate").passed

    # Predictions scored again (new parts in the manifests): the hour is judged and replaced.
    forget_scoring_inputs(platform)
    platform.score_and_vote(SCORE_START, SCORE_START)
    assert path.stat().st_mtime_ns != written
    pd.testing.assert_frame_equal(sql.read_device_verdicts(SCORE_START, SCORE_START + HOUR), stored)
