"""The vectorized batch scorer: every model of a shard in one pass over its rows.

Rows are mapped to their (device, sensor) model by integer codes; each model's parameters
are gathered per row and the kernel sums are computed with array operations, grouped by
kernel and padded support-vector count so that no Python loop runs per model or per row.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from scoring.model_format import ModelBundle, SensorModel

PREDICTION_COLUMNS = ["ts", "device", "sensor", "value", "score", "is_anomaly", "model_version"]
CHUNK_ROWS = 1 << 20


@dataclass(frozen=True)
class ShardScores:
    """Scored rows, and the rows that had no model (counted per device and sensor)."""

    predictions: pd.DataFrame
    missing_models: pd.DataFrame  # columns: device, sensor, rows


def _kernel_rows(kernel: str, z: np.ndarray, sv: np.ndarray, gamma: np.ndarray, coef0, degree) -> np.ndarray:
    """K(sv, z) per row: z (n,), sv (n, p), per-row gamma/coef0/degree (n,)."""
    if kernel == "rbf":
        diff = sv - z[:, None]
        return np.exp(-gamma[:, None] * (diff * diff))
    dot = sv * z[:, None]
    if kernel == "linear":
        return dot
    if kernel == "poly":
        return (gamma[:, None] * dot + coef0[:, None]) ** degree[:, None]
    return np.tanh(gamma[:, None] * dot + coef0[:, None])


class _ModelTable:
    """Per-model parameters as flat arrays, support vectors padded per group."""

    def __init__(self, models: list[SensorModel]):
        for model in models:
            if model.n_features != 1:
                raise ValueError("the batch scorer scores one value per reading; a model has "
                                 f"{model.n_features} features")
        self.mean = np.array([m.mean[0] for m in models])
        self.scale = np.array([m.scale[0] for m in models])
        self.intercept = np.array([m.intercept for m in models])
        self.gamma = np.array([m.gamma for m in models])
        self.coef0 = np.array([m.coef0 for m in models])
        self.degree = np.array([m.degree for m in models], dtype=float)
        n_sv = np.array([len(m.dual_coef) for m in models])
        width = np.maximum(1, 2 ** np.ceil(np.log2(np.maximum(n_sv, 1)))).astype(int)
        kernels = [m.kernel for m in models]
        # One group per (kernel, padded width): padding wastes at most half of each row's work.
        self.group = np.zeros(len(models), dtype=np.int64)
        self.groups = []
        for gid, key in enumerate(sorted(set(zip(kernels, width.tolist())))):
            kernel, w = key
            members = [i for i, m in enumerate(models) if (kernels[i], width[i]) == key]
            sv = np.zeros((len(models), w))
            coef = np.zeros((len(models), w))
            for i in members:
                sv[i, : n_sv[i]] = models[i].support_vectors[:, 0]
                coef[i, : n_sv[i]] = models[i].dual_coef
            self.group[members] = gid
            self.groups.append((kernel, sv, coef))


def decision_values(values: np.ndarray, model_index: np.ndarray, models: list[SensorModel]) -> np.ndarray:
    """Decision value of each row under its model (``model_index`` into ``models``).

    Equal to scikit-learn's ``Pipeline.decision_function`` of the same fitted pipeline.
    """
    table = _ModelTable(models)
    values = np.asarray(values, dtype=float)
    out = np.empty(len(values))
    row_group = table.group[model_index]
    for gid, (kernel, sv_all, coef_all) in enumerate(table.groups):
        rows = np.flatnonzero(row_group == gid) if len(table.groups) > 1 else np.arange(len(values))
        for start in range(0, len(rows), CHUNK_ROWS):
            idx = rows[start : start + CHUNK_ROWS]
            m = model_index[idx]
            z = (values[idx] - table.mean[m]) / table.scale[m]
            k = _kernel_rows(kernel, z, sv_all[m], table.gamma[m], table.coef0[m], table.degree[m])
            out[idx] = np.einsum("ij,ij->i", k, coef_all[m]) + table.intercept[m]
    return out


def score_shard(rows: pd.DataFrame, bundles: dict[str, ModelBundle]) -> ShardScores:
    """Score every row of a shard with its device's model for its sensor.

    Parameters
    ----------
    rows : DataFrame
        ``ts, device, sensor, value`` windows of many devices and sensors.
    bundles : dict
        Device id to its current model bundle.

    Returns
    -------
    ShardScores
        ``predictions`` (``ts, device, sensor, value, score, is_anomaly, model_version``,
        where ``score`` is the decision value and an anomaly has ``score <= 0``) and the
        rows without a model, counted per device and sensor.
    """
    keys, models, versions = [], [], []
    for device, bundle in bundles.items():
        for sensor, model in bundle.models.items():
            keys.append((str(device), str(sensor)))
            models.append(model)
            versions.append(bundle.version)
    index = pd.MultiIndex.from_tuples(keys, names=["device", "sensor"]) if keys else None
    if index is not None and len(rows):
        codes = index.get_indexer(pd.MultiIndex.from_arrays([rows["device"].astype(str), rows["sensor"].astype(str)]))
    else:
        codes = np.full(len(rows), -1)
    has_model = codes >= 0
    scored = rows.loc[has_model, ["ts", "device", "sensor", "value"]].reset_index(drop=True)
    model_index = codes[has_model]
    score = decision_values(scored["value"].to_numpy(), model_index, models) if len(scored) else np.empty(0)
    scored["score"] = score
    scored["is_anomaly"] = score <= 0
    scored["model_version"] = np.asarray(versions, dtype=object)[model_index] if len(scored) else []
    missing = (
        rows.loc[~has_model].groupby(["device", "sensor"], observed=True).size().rename("rows").reset_index()
    )
    return ShardScores(scored[PREDICTION_COLUMNS], missing)
