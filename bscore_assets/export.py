"""Export predictions in the reference implementation's CSV layout, one file per device and sensor."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from tqdm import tqdm

from resources.sql import SqlStore


def reference_layout(rows: pd.DataFrame) -> pd.DataFrame:
    """``TS, Device, Sensor, Val, Prediction`` with Prediction 1 for an anomaly, 0 otherwise."""
    return pd.DataFrame(
        {
            "TS": rows["ts"].dt.strftime("%Y-%m-%d %H:%M:%S.%f").str[:-3],
            "Device": rows["device"],
            "Sensor": rows["sensor"],
            "Val": rows["value"],
            "Prediction": rows["is_anomaly"].astype(int),
        }
    )


def export_predictions(sql: SqlStore, out: Path, fmt: str, start=None, end=None) -> list[Path]:
    rows = sql.read_predictions(start, end)
    if rows.empty:
        raise ValueError("no predictions to export in that range")
    out.mkdir(parents=True, exist_ok=True)
    files = []
    groups = rows.groupby(["device", "sensor"], sort=True)
    for (device, sensor), group in tqdm(groups, total=groups.ngroups, unit="file", desc="exporting"):
        path = out / f"preds_{device}_{sensor}.{fmt}"
        tmp = path.with_name(f".{path.name}.tmp")
        table = reference_layout(group)
        if fmt == "csv":
            table.to_csv(tmp, index=False)
        else:
            table.to_parquet(tmp, index=False)
        tmp.replace(path)
        files.append(path)
    return files
