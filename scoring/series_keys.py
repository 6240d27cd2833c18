"""Integer keys for (device, sensor) series, so that group-bys over millions of readings hash
and sort integers instead of strings."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def plain_strings(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    """A string column as one plain array (dictionary chunks decoded: their dictionaries may differ)."""
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    chunks = [chunk.dictionary_decode() if pa.types.is_dictionary(chunk.type) else chunk for chunk in chunks]
    chunks = [chunk if chunk.type == pa.string() else chunk.cast(pa.string()) for chunk in chunks]
    if len(chunks) == 1:
        return chunks[0]
    return pa.concat_arrays(chunks) if chunks else pa.array([], pa.string())


def ranked_codes(column: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, pa.Array]:
    """Each value's rank among the column's distinct values, and those values sorted.

    Ranks sort as the strings do (byte order, which is code-point order for UTF-8), so
    sorting by rank sorts by value. Dictionary-encoded columns (as Parquet parts are read)
    are not hashed again: their dictionaries are unified and the indices mapped.
    """
    if isinstance(column, pa.Array):
        column = pa.chunked_array([column])
    if pa.types.is_dictionary(column.type):
        column = column.unify_dictionaries()
        dictionary = column.chunk(0).dictionary if column.num_chunks else pa.array([], pa.string())
        indices = np.concatenate([chunk.indices.to_numpy(zero_copy_only=False) for chunk in column.chunks]
                                 or [np.zeros(0, dtype=np.int64)])
    else:
        encoded = pc.dictionary_encode(plain_strings(column))
        dictionary, indices = encoded.dictionary, encoded.indices.to_numpy(zero_copy_only=False)
    dictionary = plain_strings(dictionary)
    order = pc.array_sort_indices(dictionary).to_numpy()
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return rank[indices], dictionary.take(pa.array(order))


def repeated_rows(*columns: np.ndarray) -> np.ndarray:
    """A mask of the rows that repeat an earlier row of the integer ``columns``."""
    key = np.zeros(len(columns[0]), dtype=np.int64)
    for column in columns:
        column = column - column.min() if len(column) else column
        span = int(column.max()) + 1 if len(column) else 1
        step = np.gcd.reduce(column) if len(column) else 1
        if step > 1:  # e.g. nanosecond times of whole seconds
            column, span = column // step, (span - 1) // step + 1
        if span and int(key.max() if len(key) else 0) >= (1 << 62) // span:
            return _repeated_by_sorting(columns)
        key = key * span + column
    size = int(key.max()) + 1 if len(key) else 0
    if size <= max(4 * len(key), 1 << 22):
        counts = np.bincount(key, minlength=size)
        if counts.max(initial=0) <= 1:
            return np.zeros(len(key), dtype=bool)
        suspects = np.flatnonzero(counts[key] > 1)
        repeated = np.zeros(len(key), dtype=bool)
        _, first = np.unique(key[suspects], return_index=True)
        repeated[suspects] = True
        repeated[suspects[first]] = False
        return repeated
    _, first = np.unique(key, return_index=True)
    repeated = np.ones(len(key), dtype=bool)
    repeated[first] = False
    return repeated


def _repeated_by_sorting(columns) -> np.ndarray:
    order = np.lexsort(columns[::-1])
    same = np.ones(len(order), dtype=bool)
    same[0] = False
    for column in columns:
        same[1:] &= column[order][1:] == column[order][:-1]
    # Within a run of equal rows, lexsort keeps row order (it is stable): the first is the original.
    repeated = np.zeros(len(order), dtype=bool)
    repeated[order[same]] = True
    return repeated


def series_codes(device: pa.ChunkedArray, sensor: pa.ChunkedArray) -> tuple[np.ndarray, pa.Array, pa.Array]:
    """One integer per row for its (device, sensor), ordered as (device, sensor) sort; with the
    sorted devices and sensors: ``device = devices[code // len(sensors)]``."""
    device_rank, devices = ranked_codes(device)
    sensor_rank, sensors = ranked_codes(sensor)
    return device_rank * len(sensors) + sensor_rank, devices, sensors
