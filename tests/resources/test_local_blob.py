"""The folder blob store: atomic writes, prefix listing, clear errors."""

import os
import threading

import pandas as pd
import pytest

from resources.blob import LocalBlobStore


@pytest.fixture
def store(tmp_path):
    return LocalBlobStore(root=str(tmp_path / "blob"))


def test_round_trip_and_listing(store):
    store.write_bytes("raw/2026-01-01T00/part-1.parquet", b"a")
    store.write_bytes("raw/2026-01-01T01/part-1.parquet", b"b")
    store.write_bytes("models/1/current.json", b"{}")
    assert store.read_bytes("raw/2026-01-01T00/part-1.parquet") == b"a"
    assert store.list("raw/") == ["raw/2026-01-01T00/part-1.parquet", "raw/2026-01-01T01/part-1.parquet"]
    assert store.list("raw/2026-01-01T01") == ["raw/2026-01-01T01/part-1.parquet"]
    assert store.list("nothing/") == []
    store.delete("models/1/current.json")
    assert not store.exists("models/1/current.json")


def test_parquet_round_trip(store):
    frame = pd.DataFrame({"ts": pd.to_datetime(["2026-01-01T00:00:05"]), "device": ["1"], "value": [1.5]})
    store.write_parquet("x/y.parquet", frame)
    pd.testing.assert_frame_equal(store.read_parquet("x/y.parquet"), frame)


def test_missing_key_and_bad_key_are_clear(store):
    with pytest.raises(FileNotFoundError, match="nope"):
        store.read_bytes("nope")
    with pytest.raises(ValueError, match="not a relative path"):
        store.write_bytes("../escape", b"x")


def test_readers_never_see_a_partial_write(store):
    big_a, big_b = b"a" * 5_000_000, b"b" * 5_000_000
    store.write_bytes("k", big_a)
    seen, stop = set(), threading.Event()

    def read():
        while not stop.is_set():
            seen.add(store.read_bytes("k"))

    reader = threading.Thread(target=read)
    reader.start()
    for _ in range(20):
        store.write_bytes("k", big_b)
        store.write_bytes("k", big_a)
    stop.set()
    reader.join()
    assert seen <= {big_a, big_b}
    assert not [name for name in os.listdir(store.root) if name.endswith(".tmp")]
