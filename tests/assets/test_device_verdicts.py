"""``device_verdicts`` after ``bscore score``'s flow: the stored verdicts are the vote applied to
the stored predictions, in SQL and in blob, and the run reports them."""

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from scoring.blob_layout import verdicts_key
from scoring.parquet import from_parquet_bytes
from tests.assets.conftest import SCORE_START

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
    pd.testing.assert_frame_equal(stored, expected, check_dtype=False)
    parquet = from_parquet_bytes(blob.read_bytes(verdicts_key(SCORE_START)))
    pd.testing.assert_frame_equal(parquet, expected, check_dtype=False)

    assert (scoring.job, voting.job) == ("scoring_job", "verdicts_job")
    assert voting.totals == {"device_verdicts.device_windows": len(expected),
                             "device_verdicts.anomalous_device_windows": int(expected["is_anomaly"].sum())}
    check = voting.check("device_anomaly_rate")
    assert check.passed and check.metadata["max_device_anomaly_rate"] == round(expected["is_anomaly"].mean(), 4)

    # Rescoring one sensor votes the hour again over every sensor: nothing changes.
    platform.score_and_vote(SCORE_START, SCORE_START, sensors=["2"])
    pd.testing.assert_frame_equal(sql.read_device_verdicts(SCORE_START, SCORE_START + HOUR), stored)
    assert pq.read_schema(pa.BufferReader(blob.read_bytes(verdicts_key(SCORE_START)))).names == list(expected)
