"""One model scored the reference implementation's way: one process, the whole CSV, one pickle.

Usage: ``python bench/reference_step.py DEVICE SENSOR MODELS_DIR DATA_FILE PREDS_DIR``.
Mirrors the reference's scoring step: read the whole data CSV (``TS, Device, Sensor,
Value``), keep this sensor's rows, unpickle ``model_<device>_<sensor>``, predict and write
``preds_<device>_<sensor>_<timestamp>.csv``. Only the benchmark runs it, on pickles it wrote.
"""

import pickle
import sys
import time
from pathlib import Path

import pandas as pd


def main(device: str, sensor: str, models_dir: str, data_file: str, preds_dir: str) -> None:
    data = pd.read_csv(data_file, dtype={"Device": str, "Sensor": str})
    rows = data[(data["Device"] == device) & (data["Sensor"] == sensor)]
    with open(Path(models_dir) / f"model_{device}_{sensor}", "rb") as f:
        model = pickle.load(f)  # the benchmark's own pickles: this is the reference's way
    predictions = model.predict(rows[["Value"]].to_numpy())
    out = pd.DataFrame({"TS": rows["TS"], "Device": device, "Sensor": sensor, "Val": rows["Value"],
                        "Prediction": (predictions == -1).astype(int)})
    out.to_csv(Path(preds_dir) / f"preds_{device}_{sensor}_{time.strftime('%Y%m%d%H%M%S')}.csv", index=False)


if __name__ == "__main__":
    main(*sys.argv[1:6])
