"""Read an hour's raw Parquet parts as one table of readings, each (device, sensor, ts) once.

The drain writes one part per received batch and hour; a batch delivered again with other
boundaries writes its readings again under another name, and a device may send a reading
twice. Readers keep the first of each (device, sensor, ts), in part order, as
:func:`scoring.readings.drop_duplicate_readings` does, but in columns: the parts are read
by pyarrow and the duplicates found by hashing one integer per (device, sensor, ts). Parts
come in the order the drain accepted them (``bscore_assets.storage.raw_parts``), so the first
accepted value of a re-sent reading wins. What was dropped is counted in :class:`RepeatCounts`:
re-deliveries (the same value again) apart from conflicting re-sends (another value, ignored).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from scoring.series_keys import plain_strings, repeated_rows, series_codes

RAW_SCHEMA = pa.schema([("ts", pa.timestamp("ns")), ("device", pa.string()), ("sensor", pa.string()),
                        ("value", pa.float64())])
_READ_SCHEMA = pa.schema([("ts", pa.timestamp("ns")), ("device", pa.dictionary(pa.int32(), pa.string())),
                          ("sensor", pa.dictionary(pa.int32(), pa.string())), ("value", pa.float64())])


@dataclass
class RepeatCounts:
    """Readings dropped as repeats of an earlier (device, sensor, ts), summed over reads."""

    redelivered: int = 0  # the same value again
    conflicts: int = 0  # another value: ignored, the first accepted one is kept

    def add(self, series: np.ndarray, ns: np.ndarray, value: pa.ChunkedArray, repeated: np.ndarray) -> None:
        """Count the repeated rows: a conflict when its value's bits differ from the kept row's."""
        bits = pc.cast(value, pa.float64()).to_numpy().view(np.int64)
        kept = pd.DataFrame({"series": series, "ts": ns, "bits": bits}).groupby(
            ["series", "ts"], sort=False)["bits"].transform("first").to_numpy()
        conflicts = int((bits != kept).sum())
        self.conflicts += conflicts
        self.redelivered += int(repeated.sum()) - conflicts


def _read_part(part: bytes | str | Path) -> pa.Table:
    source = pa.BufferReader(part) if isinstance(part, (bytes, bytearray, memoryview)) else str(part)
    # Ids read dictionary-encoded: a part holds each device's id thousands of times.
    table = pq.read_table(source, columns=_READ_SCHEMA.names, read_dictionary=["device", "sensor"])
    return table.cast(_READ_SCHEMA) if table.schema != _READ_SCHEMA else table


def _within(table: pa.Table, after: pd.Timestamp | None, until: pd.Timestamp | None) -> pa.Table:
    """The rows with ``after < ts <= until`` (a missing bound does not limit)."""
    if after is None and until is None:
        return table
    ns = pc.cast(table["ts"], pa.int64()).to_numpy()
    keep = np.ones(len(ns), dtype=bool)
    if after is not None:
        keep &= ns > pd.Timestamp(after).value
    if until is not None:
        keep &= ns <= pd.Timestamp(until).value
    return table if keep.all() else table.filter(pa.array(keep))


def read_raw_parts(parts: Iterable[bytes | str | Path], *, dictionary: bool = False,
                   after: pd.Timestamp | None = None, until: pd.Timestamp | None = None,
                   repeats: RepeatCounts | None = None) -> pa.Table:
    """Readings of Parquet parts (bytes or paths), each (device, sensor, ts) kept once.

    Parameters
    ----------
    parts : iterable of bytes, str or Path
        Parquet files holding ``ts, device, sensor, value`` (other columns are ignored), in
        the order their readings arrived; read one at a time.
    dictionary : bool
        Keep ``device`` and ``sensor`` dictionary-encoded, as read (less memory, and
        :func:`scoring.windows.window_means_table` groups them without hashing strings).
    after, until : Timestamp, optional
        Keep only the readings with ``after < ts <= until``, dropped as each part is read (so
        a time slice of an hour needs memory for the slice). Repeats of a reading share its
        time, so de-duplicating a slice gives the slice of the de-duplicated whole.
    repeats : RepeatCounts, optional
        Adds the dropped repeats to it.

    Returns
    -------
    pyarrow.Table
        ``ts`` (``timestamp[ns]``), ``device``, ``sensor``, ``value``: the first reading of each
        (device, sensor, ts), in the order they first appear.
    """
    tables = [_within(_read_part(part), after, until) for part in parts]
    if not tables:
        return (_READ_SCHEMA if dictionary else RAW_SCHEMA).empty_table()
    table = pa.concat_tables(tables)
    if not len(table):
        return table if dictionary else table.cast(RAW_SCHEMA)
    series, _, _ = series_codes(table["device"], table["sensor"])
    ns = pc.cast(table["ts"], pa.int64()).to_numpy()
    repeated = repeated_rows(series, ns)
    if repeats is not None and repeated.any():
        repeats.add(series, ns, table["value"], repeated)
    table = table if not repeated.any() else table.filter(pa.array(~repeated))
    if not dictionary:
        table = table.set_column(1, "device", plain_strings(table["device"])).set_column(
            2, "sensor", plain_strings(table["sensor"]))
    return table
