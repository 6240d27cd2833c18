"""The vectorized batch scorer: every model of a shard in one pass over its rows.

Rows are cut into runs of consecutive rows with the same (device, sensor) model, found
from integer codes (a categorical column gives them for free; anything else is factorized
once), so no Python loop runs per model or per row. Each detector kind (``scoring.detectors``)
compiles its models into batches, and each batch scores cache-sized blocks of whole runs (a
run is one series in time order when rows are sorted by device, sensor and time, as the SQL
store returns them). Blocks run on ``THREADS`` threads (numpy releases the GIL). Rows that
carry their window's smallest and largest reading (``low``, ``high``) hand them to the batches
that judge them (``uses_extremes``); the others see only the window means.

One device's model never takes the shard down: a bundle that cannot be compiled, a
detector that raises, or parameters that give a non-finite score refuse that device (all
its rows), with the reason, in ``ShardScores.refused``; every other device is scored.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from scoring.detectors import kind_of
from scoring.model_format import ModelBundle

PREDICTION_COLUMNS = ["ts", "device", "sensor", "value", "score", "is_anomaly", "model_version"]
BLOCK_ROWS = 1 << 17
THREADS = min(2, os.cpu_count() or 1)


def _no_refusals() -> pd.DataFrame:
    return pd.DataFrame({"device": pd.Series(dtype=object), "reason": pd.Series(dtype=object)})


@dataclass(frozen=True)
class ShardScores:
    """Scored rows, the rows that had no model (counted per device and sensor), and the
    devices whose model was refused while scoring (none of their rows are in ``predictions``)."""

    predictions: pd.DataFrame
    missing_models: pd.DataFrame  # columns: device, sensor, rows
    refused: pd.DataFrame = field(default_factory=_no_refusals)  # columns: device, reason


@dataclass(frozen=True)
class Runs:
    """Maximal runs of consecutive rows under the same model (``model`` -1: no model)."""

    start: np.ndarray
    length: np.ndarray
    model: np.ndarray

    @classmethod
    def of(cls, *codes: np.ndarray) -> tuple["Runs", np.ndarray]:
        """Runs of equal ``codes`` tuples; also returns the index of each run's first row."""
        n = len(codes[0])
        change = np.zeros(max(n - 1, 0), dtype=bool)
        for column in codes:
            change |= column[1:] != column[:-1]
        start = np.concatenate([[0], np.flatnonzero(change) + 1]) if n else np.empty(0, dtype=np.int64)
        length = np.diff(np.append(start, n))
        return cls(start, length, np.full(len(start), -1)), start

    def with_model(self, model: np.ndarray) -> "Runs":
        return Runs(self.start, self.length, np.asarray(model, dtype=np.int64))

    def rows(self, runs: np.ndarray) -> slice | np.ndarray:
        """The rows of the given runs (ascending): a slice when they are contiguous."""
        lengths = self.length[runs]
        first, total = self.start[runs[0]], int(lengths.sum())
        if self.start[runs[-1]] + lengths[-1] - first == total:
            return slice(int(first), int(first) + total)
        offsets = np.cumsum(lengths) - lengths
        return np.repeat(self.start[runs] - offsets, lengths) + np.arange(total)


class CompiledModels:
    """Models as batches of their kinds, ready to score any rows; build once, score many shards.

    Parameters
    ----------
    models : list
        Fitted models of any ``scoring.detectors`` kinds.
    """

    def __init__(self, models: list):
        self.models = models
        self.group = np.full(len(models), -1)
        self.local = np.zeros(len(models), dtype=np.int64)
        self.groups: list = []
        kinds = [kind_of(model) for model in models]
        for kind in dict.fromkeys(kinds):
            mine = np.array([i for i, k in enumerate(kinds) if k is kind])
            for members, batch in kind.compile([models[i] for i in mine]):
                self.group[mine[members]] = len(self.groups)
                self.local[mine[members]] = np.arange(len(members))
                self.groups.append(batch)

    def decision(self, values: np.ndarray, runs: Runs, threads: int = THREADS,
                 errors: dict[int, str] | None = None, low: np.ndarray | None = None,
                 high: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Scores and anomaly flags of every row of a run with a model (others: NaN, not flagged).

        ``low`` and ``high`` (both or neither): each row's smallest and largest reading, NaN
        where not recorded. A batch that raises scores NaN; each of its models' numbers and the
        error go to ``errors``.
        """
        values = np.ascontiguousarray(values, dtype=np.float64)
        if (low is None) != (high is None):
            raise ValueError("low and high come together: pass both or neither")
        if low is not None:
            low, high = np.ascontiguousarray(low, dtype=np.float64), np.ascontiguousarray(high, dtype=np.float64)
        score = np.full(len(values), np.nan)
        anomaly = np.zeros(len(values), dtype=bool)
        has_model = runs.model >= 0
        run_group = np.full(len(runs.model), -1)
        run_group[has_model] = self.group[runs.model[has_model]]
        tasks = []
        for gid, group in enumerate(self.groups):
            members = np.flatnonzero(run_group == gid)
            if len(members):
                tasks.extend((group, block) for block in _blocks(members, runs.length[members]))

        def score_blocks(share):
            # Overflow gives a non-finite score, which refuses its device (score_shard): no warning needed.
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                for group, block in share:
                    uses_extremes = low is not None and getattr(group, "uses_extremes", False)
                    try:
                        if hasattr(group, "decision_into"):  # scores its runs where they lie: no gather, no scatter
                            group.decision_into(values, runs.start[block], self.local[runs.model[block]],
                                                runs.length[block], *((low, high) if uses_extremes else (None, None)),
                                                score, anomaly)
                            continue
                        rows = runs.rows(block)
                        extremes = (low[rows], high[rows]) if uses_extremes else ()
                        score[rows], anomaly[rows] = group.decision(values[rows], self.local[runs.model[block]],
                                                                    runs.length[block], *extremes)
                    except Exception as exc:  # a loaded detector that fails fails its device, not the shard
                        rows = runs.rows(block)
                        score[rows], anomaly[rows] = np.nan, False
                        for model in np.unique(runs.model[block]) if errors is not None else ():
                            errors[int(model)] = f"{type(exc).__name__}: {str(exc)[:200]}"

        threads = max(1, min(threads, len(tasks)))
        if threads > 1:
            # One contiguous share of blocks per thread: a task per block costs more than it saves.
            bounds = np.linspace(0, len(tasks), threads + 1).astype(int)
            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(score_blocks, [tasks[a:b] for a, b in zip(bounds[:-1], bounds[1:])]))
        else:
            score_blocks(tasks)
        return score, anomaly


def _blocks(runs: np.ndarray, lengths: np.ndarray) -> list[np.ndarray]:
    """Consecutive runs split into blocks of about ``BLOCK_ROWS`` rows."""
    block = (np.cumsum(lengths) - lengths) // BLOCK_ROWS
    return np.split(runs, np.flatnonzero(np.diff(block)) + 1)


def decision_values(values: np.ndarray, model_index: np.ndarray, models: list) -> np.ndarray:
    """Decision value of each row under its model (``model_index`` into ``models``).

    Equal to scikit-learn's ``decision_function`` of the same fitted pipeline.
    """
    model_index = np.asarray(model_index, dtype=np.int64)
    runs, first = Runs.of(model_index)
    return CompiledModels(models).decision(values, runs.with_model(model_index[first]))[0]


def _codes(column: pd.Series) -> tuple[np.ndarray, pd.Index]:
    """Integer codes and their labels (as strings): free for a categorical column."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        return column.cat.codes.to_numpy(), pd.Index(column.cat.categories.astype(str))
    codes, uniques = pd.factorize(column, use_na_sentinel=True)
    return codes, pd.Index(pd.Index(uniques).astype(str))


class BundleModels:
    """The models of many device bundles, compiled once, with their keys and versions.

    A device whose models cannot be compiled is left out and its reason kept in ``refused``.
    """

    def __init__(self, bundles: dict[str, ModelBundle]):
        self.refused: dict[str, str] = {}
        try:
            self._compile(bundles)
        except Exception:
            # Rare: find the devices at fault one at a time, then compile the others together.
            usable = {}
            for device, bundle in bundles.items():
                reason = _compile_error(bundle)
                if reason is None:
                    usable[device] = bundle
                else:
                    self.refused[str(device)] = reason
            self._compile(usable)

    def _compile(self, bundles: dict[str, ModelBundle]) -> None:
        devices, sensors, models, versions = [], [], [], []
        for device, bundle in bundles.items():
            for sensor, model in bundle.models.items():
                devices.append(str(device))
                sensors.append(str(sensor))
                models.append(model)
                versions.append(bundle.version)
        self.devices, self.sensors = np.array(devices, dtype=object), np.array(sensors, dtype=object)
        codes, labels = pd.factorize(np.array(versions, dtype=object))
        # Codes in the smallest dtype that holds them, as a Categorical keeps them: no copy later.
        dtype = next(t for t in (np.int8, np.int16, np.int32, np.int64) if len(labels) < np.iinfo(t).max)
        self.version_codes = codes.astype(dtype)
        self.version_labels = pd.Index(labels)
        self.compiled = CompiledModels(models)

    def model_of(self, device_labels: pd.Index, sensor_labels: pd.Index) -> np.ndarray:
        """Model number for each (device code, sensor code) pair, -1 where there is none."""
        table = np.full((len(device_labels) + 1, len(sensor_labels) + 1), -1, dtype=np.int64)
        d, s = device_labels.get_indexer(self.devices), sensor_labels.get_indexer(self.sensors)
        known = (d >= 0) & (s >= 0)
        table[d[known], s[known]] = np.flatnonzero(known)
        return table


def _compile_error(bundle: ModelBundle) -> str | None:
    """Why ``bundle`` cannot be compiled (naming the sensor), or ``None``."""
    for sensor, model in bundle.models.items():
        try:
            CompiledModels([model])
        except Exception as exc:
            return f"sensor {sensor}: model cannot be scored: {type(exc).__name__}: {str(exc)[:200]}"
    try:
        BundleModels.__new__(BundleModels)._compile({bundle.device: bundle})
    except Exception as exc:
        return f"model cannot be scored: {type(exc).__name__}: {str(exc)[:200]}"
    return None


def score_shard(rows: pd.DataFrame, bundles: dict[str, ModelBundle] | BundleModels,
                threads: int = THREADS, context_until=None) -> ShardScores:
    """Score every row of a shard with its device's model for its sensor.

    Parameters
    ----------
    rows : DataFrame
        ``ts, device, sensor, value`` windows of many devices and sensors, optionally with
        ``low`` and ``high`` (each window's smallest and largest reading, NaN or missing where
        not recorded); categorical ``device`` and ``sensor`` columns and rows sorted by them
        are fastest.
    bundles : dict or BundleModels
        Device id to its current model bundle, or those bundles already compiled.
    threads : int
        Threads that score blocks of rows in parallel.
    context_until : Timestamp, optional
        Rows stamped at or before it are context: they inform the scores of the rows after
        them (a kind that judges a window by its recent past) but are neither returned nor
        counted.

    Returns
    -------
    ShardScores
        ``predictions`` (``ts, device, sensor, value, score, is_anomaly, model_version``,
        where ``score`` is the decision value, higher is more normal, and each kind flags
        below its threshold, see ``scoring.detectors``), the rows without a model, counted per device and sensor,
        and ``refused`` (``device, reason``): devices whose model could not be compiled,
        raised, or gave a non-finite score; none of their rows are in ``predictions``.
    """
    compiled = bundles if isinstance(bundles, BundleModels) else BundleModels(bundles)
    device_codes, device_labels = _codes(rows["device"])
    sensor_codes, sensor_labels = _codes(rows["sensor"])
    runs, first = Runs.of(device_codes, sensor_codes)
    runs = runs.with_model(compiled.model_of(device_labels, sensor_labels)[device_codes[first], sensor_codes[first]])
    errors: dict[int, str] = {}
    low, high = window_extremes_of(rows)
    score, anomaly = compiled.compiled.decision(rows["value"].to_numpy(dtype=np.float64), runs, threads, errors,
                                                low, high)

    refused = _refusals(runs, first, score, errors, compiled, device_labels, device_codes, sensor_labels, sensor_codes)
    has_run = runs.model >= 0
    missing_runs = ~has_run
    if len(refused):
        refused_device = np.asarray(device_labels.isin(refused["device"]))[device_codes[first]]
        has_run &= ~refused_device
        missing_runs &= ~refused_device
    judged = None if context_until is None else rows["ts"].to_numpy() > np.datetime64(pd.Timestamp(context_until))
    keep = slice(None) if has_run.all() else np.repeat(has_run, runs.length)
    version_codes = np.repeat(compiled.version_codes[runs.model[has_run]], runs.length[has_run])
    if judged is not None:
        version_codes = version_codes[judged[keep]]
        keep = judged & (True if isinstance(keep, slice) else keep)
    columns = {name: rows[name].array[keep] for name in ("ts", "device", "sensor", "value")}
    predictions = pd.DataFrame({
        **columns,
        "score": score[keep],
        "is_anomaly": anomaly[keep],
        "model_version": pd.Categorical.from_codes(version_codes, categories=compiled.version_labels, validate=False),
    }, copy=False)
    return ShardScores(predictions[PREDICTION_COLUMNS], _missing(runs, first, rows, missing_runs, judged), refused)


def window_extremes_of(rows: pd.DataFrame) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The rows' ``low`` and ``high`` as float arrays (NaN where missing), or ``(None, None)``
    when the rows have no such columns."""
    if "low" not in rows.columns or "high" not in rows.columns:
        return None, None
    return _float_column(rows["low"]), _float_column(rows["high"])


def _float_column(column: pd.Series) -> np.ndarray:
    if column.dtype == np.float64:  # as the store hands them: no copy
        return column.to_numpy()
    return pd.to_numeric(column).to_numpy(dtype=np.float64, na_value=np.nan)


def _refusals(runs: Runs, first: np.ndarray, score: np.ndarray, errors: dict[int, str], compiled: BundleModels,
              device_labels: pd.Index, device_codes: np.ndarray, sensor_labels: pd.Index,
              sensor_codes: np.ndarray) -> pd.DataFrame:
    """Devices refused while scoring, one reason each: a model that could not be compiled, a
    detector that raised, or non-finite scores of a model's runs."""
    reasons: dict[str, list[str]] = {}
    present = set(device_labels)
    for device, reason in compiled.refused.items():
        if device in present:
            reasons.setdefault(device, []).append(reason)
    bad = ~np.isfinite(score)
    scored = runs.model >= 0
    # Rows without a model are NaN by design; only more non-finite rows than those need a look.
    if len(runs.start) and np.count_nonzero(bad) > int(runs.length[~scored].sum()):
        bad_runs = np.flatnonzero(np.logical_or.reduceat(bad, runs.start) & scored)
        seen = set()
        for run in bad_runs:
            device = str(device_labels[device_codes[first[run]]])
            sensor = str(sensor_labels[sensor_codes[first[run]]])
            if (device, sensor) in seen:  # rows not sorted: one model's rows in several runs
                continue
            seen.add((device, sensor))
            rows = runs.rows(np.array([run]))
            why = errors.get(int(runs.model[run]))
            n_bad = int(np.count_nonzero(bad[rows]))
            reasons.setdefault(device, []).append(
                f"sensor {sensor}: model version {compiled.version_labels[compiled.version_codes[runs.model[run]]]} "
                + (f"failed to score: {why}" if why else
                   f"gave non-finite scores for {n_bad} of {int(runs.length[run])} windows"))
    if not reasons:
        return _no_refusals()
    return pd.DataFrame({"device": list(reasons), "reason": ["; ".join(r) for r in reasons.values()]})


def _missing(runs: Runs, first: np.ndarray, rows: pd.DataFrame, missing: np.ndarray,
             judged: np.ndarray | None = None) -> pd.DataFrame:
    """Rows of the ``missing`` runs (no model), counted per device and sensor (only ``judged`` rows)."""
    lengths = runs.length if judged is None or not len(judged) else np.add.reduceat(judged.astype(np.int64), runs.start)
    frame = pd.DataFrame({
        "device": rows["device"].iloc[first[missing]].to_numpy(),
        "sensor": rows["sensor"].iloc[first[missing]].to_numpy(),
        "rows": lengths[missing].astype(np.int64),
    })
    frame = frame[frame["rows"] > 0]
    return frame.groupby(["device", "sensor"], sort=True, observed=True, dropna=False)["rows"].sum().reset_index()
