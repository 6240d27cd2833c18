"""``bscore predictions export``: one file per (device, sensor), whatever the ids hold, with the
score (issue 11, case 4)."""

import pandas as pd

from bscore_assets.predictions.export import export_predictions
from resources.sql import SqlStore

H0 = pd.Timestamp("2026-03-01T00:00")


def test_ids_with_underscores_never_share_a_file_and_scores_are_written(tmp_path):
    sql = SqlStore(url=f"sqlite:///{tmp_path / 'bscore.db'}")
    pairs = [("a_b", "c"), ("a", "b_c")]
    rows = pd.DataFrame({
        "ts": [H0 + pd.Timedelta(seconds=5)] * 2, "device": [d for d, _ in pairs], "sensor": [s for _, s in pairs],
        "value": [1.0, 2.0], "score": [0.5, -0.25], "is_anomaly": [False, True], "model_version": "v1"})
    sql.replace_predictions(rows, H0, H0 + pd.Timedelta(hours=1), ["c", "b_c"])
    files = export_predictions(sql, tmp_path / "out", "csv")
    assert len(set(files)) == 2 and all(f.exists() for f in files)
    read = {(t["Device"].iloc[0], t["Sensor"].iloc[0]): t for t in map(pd.read_csv, files)}
    assert set(read) == set(pairs)
    assert list(read[("a", "b_c")].columns) == ["TS", "Device", "Sensor", "Val", "Prediction", "Score"]
    assert read[("a", "b_c")][["Val", "Prediction", "Score"]].values.tolist() == [[2.0, 1, -0.25]]
    assert read[("a_b", "c")][["Val", "Prediction", "Score"]].values.tolist() == [[1.0, 0, 0.5]]
