"""The folder blob store: atomic writes (the shared contract is in test_blob_contract.py)."""

import os
import threading

import pytest

from resources.blob import LocalBlobStore


@pytest.fixture
def store(tmp_path):
    return LocalBlobStore(root=str(tmp_path / "blob"))


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
