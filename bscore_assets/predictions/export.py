"""Export predictions in the reference implementation's layout, one file per device and sensor.

Files are ``<out>/<device>/preds_<device>_<sensor>.<csv|parquet>``: ids may hold ``_``, so
the reference's flat ``preds_<device>_<sensor>`` names could collide (``a_b``/``c`` and
``a``/``b_c``); ids hold no ``/``, so one folder per device keeps every pair apart.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from tqdm import tqdm

from resources.sql import SqlStore

COLUMNS = ["TS", "Device", "Sensor", "Val", "Prediction", "Score"]


def reference_layout(rows: pd.DataFrame) -> pd.DataFrame:
    """``TS, Device, Sensor, Val, Prediction, Score``: the reference's columns (Prediction 1 for
    an anomaly, 0 otherwise), then the model's score (lower is more abnormal; where the anomaly
    threshold lies depends on the kind, docs/detectors.md, so read Prediction for the verdict)."""
    return pd.DataFrame(
        {
            "TS": rows["ts"].dt.strftime("%Y-%m-%d %H:%M:%S.%f").str[:-3],
            "Device": rows["device"],
            "Sensor": rows["sensor"],
            "Val": rows["value"],
            "Prediction": rows["is_anomaly"].astype(int),
            "Score": rows["score"],
        }
    )


def export_path(out: Path, device: str, sensor: str, fmt: str) -> Path:
    """Where a (device, sensor) pair's predictions go; distinct pairs never share a path."""
    return out / device / f"preds_{device}_{sensor}.{fmt}"


def export_predictions(sql: SqlStore, out: Path, fmt: str, start=None, end=None) -> list[Path]:
    """Write every (device, sensor) pair's predictions in ``(start, end]``; returns the files."""
    rows = sql.read_predictions(start, end)
    if rows.empty:
        raise ValueError("no predictions to export in that range")
    files = []
    groups = rows.groupby(["device", "sensor"], sort=True)
    for (device, sensor), group in tqdm(groups, total=groups.ngroups, unit="file", desc="exporting"):
        path = export_path(out, device, sensor, fmt)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        table = reference_layout(group)
        if fmt == "csv":
            table.to_csv(tmp, index=False)
        else:
            table.to_parquet(tmp, index=False)
        tmp.replace(path)
        files.append(path)
    return files
