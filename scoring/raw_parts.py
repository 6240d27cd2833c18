"""Read an hour's raw Parquet parts as one table of readings, each (device, sensor, ts) once.

The drain writes one part per received batch and hour; a batch delivered again with other
boundaries writes its readings again under another name, and a device may send a reading
twice. Readers keep the first of each (device, sensor, ts), in part order, as
:func:`scoring.readings.drop_duplicate_readings` does, but in columns: the parts are read
by pyarrow (threads, ids dictionary-encoded) and the duplicates dropped by a hash group-by.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

RAW_SCHEMA = pa.schema([("ts", pa.timestamp("ns")), ("device", pa.string()), ("sensor", pa.string()),
                        ("value", pa.float64())])


def _read_part(part: bytes | str | Path) -> pa.Table:
    source = pa.BufferReader(part) if isinstance(part, (bytes, bytearray, memoryview)) else str(part)
    table = pq.read_table(source, columns=RAW_SCHEMA.names)
    return table.cast(RAW_SCHEMA) if table.schema != RAW_SCHEMA else table


def read_raw_parts(parts: Sequence[bytes | str | Path]) -> pa.Table:
    """Readings of Parquet parts (bytes or paths), each (device, sensor, ts) kept once.

    Parameters
    ----------
    parts : sequence of bytes, str or Path
        Parquet files holding ``ts, device, sensor, value`` (other columns are ignored), in
        the order their readings arrived.

    Returns
    -------
    pyarrow.Table
        ``ts`` (``timestamp[ns]``), ``device``, ``sensor``, ``value``: the first reading of each
        (device, sensor, ts), in the order they first appear.
    """
    if not parts:
        return RAW_SCHEMA.empty_table()
    table = pa.concat_tables([_read_part(part) for part in parts]).combine_chunks()
    if not len(table):
        return table
    first = (table.append_column("row", pa.array(np.arange(len(table), dtype=np.int64)))
             .group_by(["device", "sensor", "ts"]).aggregate([("row", "min")]))
    if len(first) == len(table):  # nothing repeated: keep the table as it was read
        return table
    return table.take(pa.array(np.sort(first["row_min"].to_numpy())))

