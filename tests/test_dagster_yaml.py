"""The Azure Dagster instance example (``deploy/azure/dagster.yaml``) loads and stores in PostgreSQL.

Its compute log manager addresses ``https://<account>.blob.core.windows.net`` and cannot be
pointed at Azurite, so it is constructed (no request is made) and its target asserted;
run, event log and schedule storage are exercised on the local PostgreSQL server.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import psycopg
import pytest
from dagster._core.run_coordinator import QueuedRunCoordinator
from dagster._core.storage.compute_log_manager import ComputeIOType
from dagster_azure.blob.compute_log_manager import AzureBlobComputeLogManager
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

from tests.conftest import postgres_database, postgres_url_for

EXAMPLE = Path(__file__).resolve().parents[1] / "deploy" / "azure" / "dagster.yaml"


@pytest.fixture
def dagster_pg_url():
    """A database of its own for Dagster's tables, dropped afterwards."""
    with postgres_database("bscore_dagster") as name:
        yield postgres_url_for(name)


@pytest.fixture
def azure_instance(tmp_path, monkeypatch, dagster_pg_url):
    monkeypatch.setenv("DAGSTER_PG_URL", dagster_pg_url)
    monkeypatch.setenv("DAGSTER_COMPUTE_LOGS_ACCOUNT", "bscorelogs")
    monkeypatch.setenv("DAGSTER_COMPUTE_LOGS_CONTAINER", "dagster-logs")
    shutil.copy(EXAMPLE, tmp_path / "dagster.yaml")
    instance = dg.DagsterInstance.from_config(str(tmp_path))
    yield instance
    instance.dispose()


def test_azure_dagster_yaml_storage_is_postgres(azure_instance, dagster_pg_url):
    assert isinstance(azure_instance.run_storage, PostgresRunStorage)
    assert isinstance(azure_instance.event_log_storage, PostgresEventLogStorage)
    assert isinstance(azure_instance.schedule_storage, PostgresScheduleStorage)
    azure_instance.add_dynamic_partitions("devices", ["device-1", "device-2"])
    assert azure_instance.get_dynamic_partitions("devices") == ["device-1", "device-2"]
    with psycopg.connect(dagster_pg_url) as conn:
        tables = {row[0] for row in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert {"runs", "event_logs", "jobs", "dynamic_partitions"} <= tables


def test_azure_dagster_yaml_compute_logs_go_to_blob_storage(azure_instance):
    manager = azure_instance.compute_log_manager
    assert isinstance(manager, AzureBlobComputeLogManager)
    assert manager._container_client.url == "https://bscorelogs.blob.core.windows.net/dagster-logs"
    assert manager.upload_interval == 30
    key = manager._blob_key(["run", "step"], ComputeIOType.STDERR)
    assert key == "dagster-compute-logs/storage/run/step.err"


def test_azure_dagster_yaml_limits_concurrent_runs(azure_instance):
    assert isinstance(azure_instance.run_coordinator, QueuedRunCoordinator)
    queue = azure_instance.get_concurrency_config().run_queue_config
    assert queue.max_concurrent_runs == 4
    limits = {limit["key"]: limit for limit in queue.tag_concurrency_limits}
    assert limits["dagster/backfill"]["limit"] == 2
    assert limits["dagster/schedule_name"]["value"] == {"applyLimitPerUniqueValue": True}
    assert type(azure_instance.run_launcher).__name__ == "DefaultRunLauncher"
    assert azure_instance.run_monitoring_enabled
