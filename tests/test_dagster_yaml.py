"""The Azure Dagster instance example (``deploy/azure/dagster.yaml``) loads and stores in PostgreSQL.

It signs in to PostgreSQL with an Entra token from ``DefaultAzureCredential`` (dagster-postgres'
``azure_wif``); no tenant is reachable here, so a stand-in credential records the scopes it is
asked for and the local server (trust authentication) ignores the token it hands out. Its compute log manager addresses ``https://<account>.blob.core.windows.net`` and cannot be
pointed at Azurite, so it is constructed (no request is made) and its target asserted;
run, event log and schedule storage are exercised on the local PostgreSQL server.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

import azure.identity
import dagster as dg
import psycopg
import pytest
import sqlalchemy as sa
import yaml
from dagster._core.run_coordinator import QueuedRunCoordinator
from dagster._core.storage.compute_log_manager import ComputeIOType
from dagster_azure.blob.compute_log_manager import AzureBlobComputeLogManager
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

from dagster._core.test_utils import create_run_for_test
from dagster._daemon.monitoring.run_monitoring import monitor_started_run

from bscore_assets.predictions.orphan_jobs import azureml_orphan_jobs
from resources.azureml import AzureMLComputeBackend
from tests.conftest import postgres_database, postgres_url_for
from tests.resources.test_azureml_jobs import RecordingClient, RecordingJobs

EXAMPLE = Path(__file__).resolve().parents[1] / "deploy" / "azure" / "dagster.yaml"


@pytest.fixture
def dagster_pg_url():
    """A database of its own for Dagster's tables, dropped afterwards."""
    with postgres_database("bscore_dagster") as name:
        yield postgres_url_for(name)


class StandInCredential:
    """``DefaultAzureCredential`` as dagster-postgres calls it: records each scope asked for."""

    scopes: list[str] = []

    def get_token(self, *scopes, **kwargs):
        from azure.core.credentials import AccessToken

        StandInCredential.scopes.extend(scopes)
        return AccessToken("entra-token-for-postgres", int(time.time()) + 3600)


@pytest.fixture
def azure_instance(tmp_path, monkeypatch, dagster_pg_url):
    url = sa.make_url(dagster_pg_url)
    for variable, value in (("DAGSTER_PG_HOST", url.host), ("DAGSTER_PG_PORT", str(url.port or 5432)),
                            ("DAGSTER_PG_DB", url.database), ("DAGSTER_PG_USER", url.username)):
        monkeypatch.setenv(variable, value)
    monkeypatch.setattr(azure.identity, "DefaultAzureCredential", StandInCredential)
    StandInCredential.scopes = []
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


def test_azure_dagster_yaml_signs_in_with_an_entra_token_not_a_password(azure_instance):
    azure_instance.get_runs()  # a connection of the run storage
    # Every connection asked the identity for a token of Azure Database for PostgreSQL's scope.
    assert StandInCredential.scopes and set(StandInCredential.scopes) == {
        "https://ossrdbms-aad.database.windows.net/.default"}
    postgres = yaml.safe_load(EXAMPLE.read_text())["storage"]["postgres"]
    assert "password" not in postgres["postgres_db"] and "postgres_url" not in postgres
    assert postgres["auth_provider"] == {"azure_wif": {}}


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


def test_azure_dagster_yaml_bounds_every_runs_time(azure_instance):
    # The DefaultRunLauncher cannot tell a dead run worker from a live one; the maximum run time can.
    assert not azure_instance.run_launcher.supports_check_run_worker_health
    assert azure_instance.run_monitoring_max_runtime_seconds == 7200
    assert azure_instance.run_monitoring_settings["cancel_timeout_seconds"] == 300
    comment = EXAMPLE.read_text().split("run_monitoring:")[0]
    assert "no worker health check" in comment and "NOT detected" in comment


ORPHAN_STAND_INS: dict[str, RecordingClient] = {}


class StandInWorkspaceBackend(AzureMLComputeBackend):
    """The Azure ML backend whose workspace is a recording stand-in of ``MLClient``."""

    def ml_client(self):
        return ORPHAN_STAND_INS[self.workspace_name]


def test_host_death_then_restart_cancels_the_dead_runs_azureml_jobs(azure_instance):
    """The host dies mid-run; after its restart run monitoring fails the run that exceeded
    max_runtime_seconds, and the azureml_orphan_jobs sensor cancels that run's unfinished jobs
    only (the stand-in records the cancel calls)."""
    dead = create_run_for_test(azure_instance, job_name="scoring_job")
    live = create_run_for_test(azure_instance, job_name="scoring_job")
    now = time.time()
    for run, started in ((dead, now - 7200 - 60), (live, now - 600)):
        azure_instance.report_dagster_event(dg.DagsterEvent(dg.DagsterEventType.RUN_START.value, job_name=run.job_name),
                                            run.run_id, timestamp=started)
    # The restarted daemon's run monitoring goes over the STARTED runs (as its iteration does).
    for record in azure_instance.get_run_records(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])):
        monitor_started_run(azure_instance, None, record, logging.getLogger("run_monitoring"))
    assert azure_instance.get_run_by_id(dead.run_id).status == dg.DagsterRunStatus.FAILURE
    assert azure_instance.get_run_by_id(live.run_id).status == dg.DagsterRunStatus.STARTED

    jobs = RecordingJobs({})
    jobs.listed = {
        "dead-shard-0": ("Running", "bscore-scoring", {"dagster_run_id": dead.run_id}),
        "dead-shard-1": ("Queued", "bscore-scoring", {"dagster_run_id": dead.run_id}),
        "dead-shard-2": ("Completed", "bscore-scoring", {"dagster_run_id": dead.run_id}),
        "live-shard-0": ("Running", "bscore-scoring", {"dagster_run_id": live.run_id}),
        "lost-run-shard": ("Running", "bscore-scoring", {"dagster_run_id": "run-of-a-wiped-instance"}),
    }
    ORPHAN_STAND_INS["ws-orphans"] = RecordingClient(jobs)
    backend = StandInWorkspaceBackend(subscription_id="sub", resource_group="rg", workspace_name="ws-orphans",
                                      environment="bscore-scoring:0123456789abcdef",
                                      storage_account_url="https://jobs.blob.core.windows.net")
    result = azureml_orphan_jobs(dg.build_sensor_context(instance=azure_instance, resources={"compute": backend}))

    assert jobs.canceled == ["dead-shard-0", "dead-shard-1", "lost-run-shard"]
    assert "canceled 3 Azure ML job(s)" in result.skip_message
    # The next tick finds nothing left to cancel.
    jobs.listed = {name: (jobs.statuses.get(name, status), *rest) for name, (status, *rest) in jobs.listed.items()}
    again = azureml_orphan_jobs(dg.build_sensor_context(instance=azure_instance, resources={"compute": backend}))
    assert jobs.canceled == ["dead-shard-0", "dead-shard-1", "lost-run-shard"]
    assert again.skip_message == "no Azure ML job outlived its run"
