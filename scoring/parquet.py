"""Tables as Parquet bytes: the one encoding of every table bscore keeps in blob storage."""

import io

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq


def to_parquet_bytes(frame: pd.DataFrame) -> bytes:
    """Encode a table as zstd-compressed Parquet, without the index."""
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), buffer, compression="zstd")
    return buffer.getvalue()


def table_to_parquet_bytes(table: pa.Table, **options) -> bytes:
    """Encode an Arrow table as zstd-compressed Parquet, as :func:`to_parquet_bytes` does a frame;
    ``options`` go to ``pyarrow.parquet.write_table``."""
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd", **options)
    return buffer.getvalue()


def from_parquet_bytes(data: bytes) -> pd.DataFrame:
    return pq.read_table(io.BytesIO(data)).to_pandas()
