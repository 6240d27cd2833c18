"""AzureBlobStore against Azurite: the same contract as the local store, on the real protocol."""

import pytest
from azure.storage.blob import ContainerClient

from resources.azure_blob import AzureBlobStore
from tests.conftest import AZURITE_KEY


@pytest.fixture
def store(azurite, monkeypatch) -> AzureBlobStore:
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite.connection_string)
    return AzureBlobStore.from_url(f"az://{azurite.new_container_name()}/bscore")


def test_from_url_parses_container_prefix_and_account():
    store = AzureBlobStore.from_url("az://bscore/prod/v1/")
    assert (store.container, store.prefix, store.account_url) == ("bscore", "prod/v1/", None)
    store = AzureBlobStore.from_url("https://acct.blob.core.windows.net/data")
    assert (store.container, store.prefix, store.account_url) == ("data", "", "https://acct.blob.core.windows.net")
    with pytest.raises(ValueError, match="query string"):
        AzureBlobStore.from_url("https://acct.blob.core.windows.net/data?sig=secret")


def test_keys_live_under_the_prefix_in_a_container_the_store_created(store, azurite):
    store.write_bytes("raw/2026-01-01T00/part-a.parquet", b"a")
    store.write_bytes("models/d1/v1.skops", b"m")
    raw = ContainerClient.from_connection_string(azurite.connection_string, store.container)
    assert sorted(raw.list_blob_names()) == ["bscore/models/d1/v1.skops", "bscore/raw/2026-01-01T00/part-a.parquet"]


def test_overwrite_replaces_whole_blob_including_block_uploads(store, azurite):
    store.write_bytes("k.bin", b"x" * 10)
    assert store.read_bytes("k.bin") == b"x" * 10
    # Above the single-put limit the SDK uploads blocks and commits them with one Put Block List.
    client = ContainerClient.from_connection_string(
        azurite.connection_string, store.container, max_single_put_size=1024, max_block_size=1024
    ).get_blob_client("bscore/big.bin")
    client.upload_blob(b"a" * 5000, overwrite=True)
    client.upload_blob(b"b" * 3000, overwrite=True)
    assert store.read_bytes("big.bin") == b"b" * 3000
    assert len(client.get_block_list("committed")[0]) == 3
    store.write_bytes("k.bin", b"y")
    assert store.read_bytes("k.bin") == b"y"


def test_describe_names_account_not_secret(store, azurite):
    text = store.describe()
    assert store.container in text and "devstoreaccount1" in text
    assert "AccountKey" not in text and azurite.connection_string.split("AccountKey=")[1][:20] not in text


def test_missing_connection_string_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("AZURE_STORAGE_CONNECTION_STRING", raising=False)
    with pytest.raises(ValueError, match="AZURE_STORAGE_CONNECTION_STRING"):
        AzureBlobStore.from_url("az://nowhere").write_bytes("k", b"")


# An unreachable service: tests/resources/test_job_blobs.py, for this store and the job's alike.
