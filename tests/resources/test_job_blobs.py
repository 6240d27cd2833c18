"""The Azure ML job opens its blobs as the resources do: one protocol, one client builder.

Against Azurite: what the job writes through ``open_job_blobs`` the Dagster resource reads
under the same keys, both clients carry the same retry policy, and a failure names the host
and never the connection string's key or SAS.
"""

import re
from pathlib import Path

import pytest

from resources.azure_blob import AzureBlobStore
from resources.blob import LocalBlobStore
from scoring.azure_storage import RETRIES, ContainerBlobs, parse_blob_url, service_client
from scoring.blobs import Blobs, FolderBlobs, open_blobs
from scoring.entrypoint import open_job_blobs
from tests.conftest import AZURITE_KEY, ROOT, free_port


@pytest.fixture
def blob_url(azurite, monkeypatch) -> str:
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite.connection_string)
    return f"az://{azurite.new_container_name()}/store"


def test_the_job_and_the_resource_share_keys_in_one_container(blob_url):
    job = open_job_blobs({"BSCORE_BLOB_URL": blob_url})
    assert isinstance(job, ContainerBlobs) and isinstance(job, Blobs)
    job.write_bytes("predictions/2026-01-01T00/sensor=1/part-a--b--run.parquet", b"part")
    resource = AzureBlobStore.from_url(blob_url)
    assert resource.list("predictions/") == ["predictions/2026-01-01T00/sensor=1/part-a--b--run.parquet"]
    resource.write_bytes("models/d1/current.json", b'{"version": "v1"}')
    assert job.read_bytes("models/d1/current.json") == b'{"version": "v1"}'
    job.delete("models/d1/current.json")
    assert not resource.exists("models/d1/current.json")
    with pytest.raises(FileNotFoundError, match="models/d1/current.json"):
        job.read_bytes("models/d1/current.json")


def test_the_job_and_the_resource_use_the_same_retry_policy(blob_url, azurite):
    job = open_job_blobs({"BSCORE_BLOB_URL": blob_url})
    resource = AzureBlobStore.from_url(blob_url).blobs()
    assert job.client is resource.client  # one client per container and credential in a process
    pipes = service_client(connection_string=azurite.connection_string)
    for client in (job.client, pipes):
        assert client._config.retry_policy.total_retries == RETRIES == 2
        assert client._config.retry_policy.initial_backoff == 1


def test_a_folder_url_opens_the_folder_store_the_local_resource_uses(tmp_path):
    job = open_job_blobs({"BSCORE_BLOB_URL": str(tmp_path / "blob")})
    assert isinstance(job, FolderBlobs)
    job.write_bytes("raw/2026-01-01T00/part-x.parquet", b"x")
    assert LocalBlobStore(root=str(tmp_path / "blob")).read_bytes("raw/2026-01-01T00/part-x.parquet") == b"x"


def test_the_job_without_a_blob_url_names_the_variable():
    with pytest.raises(ValueError, match="BSCORE_BLOB_URL"):
        open_job_blobs({})


@pytest.mark.parametrize("url, problem", [("https://acct.blob.core.windows.net/data?sig=secret", "query string"),
                                          ("s3://bucket/x", "not az:// or https://"),
                                          ("az:///prefix", "no container")])
def test_a_bad_blob_url_is_refused_without_echoing_a_secret(url, problem):
    with pytest.raises(ValueError, match=problem) as failure:
        open_blobs(url)
    assert "secret" not in str(failure.value)
    assert parse_blob_url("az://c/a/b/") == ("c", "a/b/", None)


def test_a_wrong_key_is_a_permission_error_naming_the_host_not_the_key(azurite, monkeypatch):
    """Not a ConnectionError: the run's retry policy retries outages, and retrying a refused
    credential would not help."""
    wrong = AZURITE_KEY[:-8] + "AAAAAAA="
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite.connection_string.replace(AZURITE_KEY, wrong))
    with pytest.raises(PermissionError) as failure:
        open_job_blobs({"BSCORE_BLOB_URL": f"az://{azurite.new_container_name()}"})
    message = str(failure.value)
    assert f"127.0.0.1:{azurite.port}" in message
    assert wrong[:12] not in message and AZURITE_KEY[:12] not in message


@pytest.mark.slow  # waits out the client's connection retries
@pytest.mark.parametrize("opened_by", ["job", "resource"])
def test_an_unreachable_store_names_its_host_and_no_secret(opened_by, monkeypatch):
    port = free_port()  # nothing listens there
    sas = "sv=2024-01-01&sig=c2VjcmV0"
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING",
                       f"BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1;SharedAccessSignature={sas}")
    with pytest.raises(ConnectionError) as failure:
        if opened_by == "job":
            open_job_blobs({"BSCORE_BLOB_URL": "az://unreachable"}).read_bytes("k")
        else:
            AzureBlobStore.from_url("az://unreachable").read_bytes("k")
    message = str(failure.value)
    assert f"Blob Storage at 127.0.0.1:{port}/devstoreaccount1 is unreachable" in message
    assert "sig=" not in message and AZURITE_KEY not in message


def test_only_the_storage_layer_builds_azure_storage_clients_and_credentials():
    """One client builder, checked as a reader would: by grep over the project's code."""
    builders = re.compile(r"\b(ContainerClient|BlobServiceClient)(\.from_connection_string)?\(|DefaultAzureCredential\(")
    found = sorted(str(path.relative_to(ROOT)) for folder in ("scoring", "resources", "bscore_assets")
                   for path in Path(ROOT, folder).rglob("*.py") if builders.search(path.read_text()))
    assert found == ["scoring/azure_storage.py"]
