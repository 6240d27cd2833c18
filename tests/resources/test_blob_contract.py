"""The contract every blob store keeps, run against the folder store and Azurite alike."""

import pandas as pd
import pytest

from resources.azure_blob import AzureBlobStore
from resources.blob import LocalBlobStore


@pytest.fixture(params=["local", "azurite"])
def store(request, tmp_path, monkeypatch):
    if request.param == "local":
        return LocalBlobStore(root=str(tmp_path / "blob"))
    azurite = request.getfixturevalue("azurite")
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite.connection_string)
    return AzureBlobStore.from_url(f"az://{azurite.new_container_name()}/bscore")


def test_write_read_list_delete(store):
    store.write_bytes("raw/2026-01-01T00/part-a.parquet", b"a")
    store.write_bytes("raw/2026-01-01T01/part-b.parquet", b"bb")
    store.write_bytes("models/d1/current.json", b"{}")
    assert store.read_bytes("raw/2026-01-01T01/part-b.parquet") == b"bb"
    assert store.list("raw/") == ["raw/2026-01-01T00/part-a.parquet", "raw/2026-01-01T01/part-b.parquet"]
    assert store.list("raw/2026-01-01T01") == ["raw/2026-01-01T01/part-b.parquet"]
    assert store.list("nothing/") == []
    assert store.exists("models/d1/current.json")
    store.delete("models/d1/current.json")
    store.delete("models/d1/current.json")  # deleting a missing blob is not an error
    assert not store.exists("models/d1/current.json")
    assert store.list("") == ["raw/2026-01-01T00/part-a.parquet", "raw/2026-01-01T01/part-b.parquet"]


def test_sizes_lists_the_keys_under_a_prefix_with_their_bytes(store):
    store.write_bytes("raw/2026-01-01T00/part-a.parquet", b"a" * 3)
    store.write_bytes("raw/2026-01-01T01/part-b.parquet", b"b" * 7)
    store.write_bytes("models/d1/current.json", b"{}")
    assert store.sizes("raw/") == {"raw/2026-01-01T00/part-a.parquet": 3, "raw/2026-01-01T01/part-b.parquet": 7}
    assert store.sizes("nothing/") == {}


def test_overwrite_replaces_the_whole_blob(store):
    store.write_bytes("k.bin", b"x" * 10)
    store.write_bytes("k.bin", b"y")
    assert store.read_bytes("k.bin") == b"y"


def test_parquet_round_trip(store):
    frame = pd.DataFrame({"ts": pd.to_datetime(["2026-01-01T00:00:05"]), "device": ["d1"], "value": [1.5]})
    store.write_parquet("raw/x.parquet", frame)
    pd.testing.assert_frame_equal(store.read_parquet("raw/x.parquet"), frame)


def test_missing_key_and_bad_keys_are_clear(store):
    with pytest.raises(FileNotFoundError, match="missing.bin"):
        store.read_bytes("missing.bin")
    with pytest.raises(ValueError, match="not a relative path"):
        store.write_bytes("../escape", b"x")
