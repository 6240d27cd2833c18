"""The Azure ML compute backend: each shard is an Azure ML command job run through Dagster Pipes.

The run moves names, not data: a shard's Pipes context carries only its task (devices, hours,
sensors, the run's token). The job (``python -m scoring.entrypoint`` in the scoring
Environment on the cluster) reads its windows from SQL and its bundles from the blob store with
the cluster's identity, writes its predictions to the blob store and stages them in SQL itself
(the run publishes each hour on the database server), and reports its summary over Pipes
messages in the Pipes container. ``max_jobs_in_flight`` jobs run at once;
``PipesAzureMLClient.run`` blocks per job, so each runs on a thread of its own.
What the jobs report lands on the asset's materialization as ``azureml_*`` metadata. Jobs end
with their run (``resources/azureml_jobs.py``): patient status polls, ``limits.timeout`` on every
job, every unfinished job cancelled when the run fails or is interrupted, and orphans of a dead
host cancelled by the ``azureml_orphan_jobs`` sensor. Jobs run the scoring Environment version
built from this checkout, not ``@latest``.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import ClassVar

import dagster as dg
from azure.core.exceptions import ResourceExistsError

import sqlalchemy as sa

from resources.azureml_jobs import (DEFAULT_JOB_TIMEOUT_SECONDS, POLL_RETRY_DELAYS_SECONDS, RUN_ID_TAG, OrphanJob,
                                    RunJobs, orphan_jobs)
from resources.azureml_provision import checkout_environment
from resources.blob import BlobStore, LocalBlobStore
from resources.compute import ComputeBackend, shard_log_line
from scoring.entra_sql import sql_auth as parse_sql_auth
from scoring.entrypoint import ACCOUNT_URL_VAR, BLOB_URL_VAR, SQL_AUTH_VAR, SQL_URL_VAR
from scoring.remote_tasks import summary_from_json
from scoring.shard_summary import ShardSummary
from scoring.shards import ShardTask
from scoring.training_task import TrainingSummary, TrainingTask

DEFAULT_ENVIRONMENT = "bscore-scoring"
REQUIRED_VARS = ("AZUREML_SUBSCRIPTION_ID", "AZUREML_RESOURCE_GROUP", "AZUREML_WORKSPACE")


def redact_query_strings(error: Exception) -> str:
    """An error's message with URL query strings (where SAS tokens travel) replaced."""
    return re.sub(r"(https?://[^\s?'\"]+)\?[^\s'\"]+", r"\1?<redacted>", str(error))


SECRET_QUERY_KEYS = {"password", "pwd", "odbc_connect"}


def job_sql_url(url: str) -> str:
    """The SQL URL a job may carry in its environment: one without a password (the job signs in
    with the cluster's managed identity), else a clear error naming the variable to set."""
    parsed = sa.make_url(url)
    if parsed.password or SECRET_QUERY_KEYS & {k.lower() for k in parsed.query}:
        raise ValueError("the SQL URL holds a password, which an Azure ML job definition would show: set "
                         "AZUREML_SQL_URL to a URL the cluster's managed identity signs in with")
    return url


def job_timeout_seconds(env) -> int:
    """``AZUREML_JOB_TIMEOUT_SECONDS``: whole seconds, at least 60 (Azure ML's own floor is lower,
    but a shard job cannot even pull its image faster)."""
    raw = env.get("AZUREML_JOB_TIMEOUT_SECONDS", str(DEFAULT_JOB_TIMEOUT_SECONDS))
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 60:
        raise ValueError(f"AZUREML_JOB_TIMEOUT_SECONDS={raw!r} must be a whole number of seconds, at least 60, "
                         f"such as {DEFAULT_JOB_TIMEOUT_SECONDS}")
    return value


def job_blob_url(blob: BlobStore) -> str:
    """Where the job finds the blob store (models in, prediction parts out): its URL, no secret."""
    if isinstance(blob, LocalBlobStore):
        return blob.root  # a folder the job shares (the local stand-in)
    if blob.account_url:
        return f"{blob.account_url.rstrip('/')}/{blob.container}/{blob.prefix}"
    return f"az://{blob.container}/{blob.prefix}"


@dataclass(frozen=True)
class ShardJob:
    """A shard task and the Azure ML job that runs it."""

    task: ShardTask | TrainingTask
    name: str


class AzureMLComputeBackend(ComputeBackend):
    """Scores shards as Azure ML command jobs on an autoscaling cluster, via Dagster Pipes; the
    jobs stage their predictions in SQL themselves."""

    stages_predictions: ClassVar[bool] = True

    subscription_id: str
    resource_group: str
    workspace_name: str
    cluster_name: str = "bscore-cpu"
    # name:version; unset, bscore-scoring at this checkout's build-context hash (checkout_environment)
    environment: str | None = None
    storage_account_url: str
    container: str = "bscore-pipes"
    storage_connection_string: str | None = None
    max_jobs_in_flight: int = 4
    sql_url: str | None = None  # for jobs, when not the run's own (AZUREML_SQL_URL)
    sql_auth: str | None = None  # for jobs, when not the run's own (AZUREML_SQL_AUTH: password or entra)
    blob_url: str | None = None  # for jobs, when not the run's own (AZUREML_BLOB_URL)
    experiment_name: str = "bscore-scoring"
    job_command: str = "python -m scoring.entrypoint"
    poll_interval_seconds: float = 10.0
    message_interval_seconds: float = 5.0
    job_timeout_seconds: int = DEFAULT_JOB_TIMEOUT_SECONDS  # limits.timeout of every job
    poll_retry_delays_seconds: list[float] = list(POLL_RETRY_DELAYS_SECONDS)

    @classmethod
    def from_env(cls, env=None) -> "AzureMLComputeBackend":
        """The backend configured by ``AZUREML_*`` variables (see docs/azure.md, "Azure ML").

        The storage connection string, when set, is passed as an ``EnvVar`` so that its
        value never shows in the run's configuration.
        """
        env = os.environ if env is None else env
        missing = [name for name in REQUIRED_VARS if not env.get(name)]
        account_url = env.get("AZUREML_STORAGE_ACCOUNT_URL") or (
            f"https://{env['AZUREML_STORAGE_ACCOUNT']}.blob.core.windows.net" if env.get("AZUREML_STORAGE_ACCOUNT") else None
        )
        if account_url is None:
            missing.append("AZUREML_STORAGE_ACCOUNT (or AZUREML_STORAGE_ACCOUNT_URL)")
        if missing:
            raise ValueError(f"BSCORE_COMPUTE=azureml needs {', '.join(missing)}")
        environment = env.get("AZUREML_ENVIRONMENT", DEFAULT_ENVIRONMENT)
        if "@" not in environment and ":" not in environment:
            environment = checkout_environment(environment)
        return cls(
            subscription_id=env["AZUREML_SUBSCRIPTION_ID"],
            resource_group=env["AZUREML_RESOURCE_GROUP"],
            workspace_name=env["AZUREML_WORKSPACE"],
            cluster_name=env.get("AZUREML_CLUSTER", "bscore-cpu"),
            environment=environment,
            storage_account_url=account_url,
            container=env.get("AZUREML_CONTAINER", "bscore-pipes"),
            storage_connection_string=(
                dg.EnvVar("AZURE_STORAGE_CONNECTION_STRING") if env.get("AZURE_STORAGE_CONNECTION_STRING") else None
            ),
            max_jobs_in_flight=int(env.get("AZUREML_MAX_JOBS", "4")),
            sql_url=dg.EnvVar("AZUREML_SQL_URL") if env.get("AZUREML_SQL_URL") else None,
            sql_auth=parse_sql_auth(env["AZUREML_SQL_AUTH"], "AZUREML_SQL_AUTH") if env.get("AZUREML_SQL_AUTH") else None,
            blob_url=env.get("AZUREML_BLOB_URL") or None,
            devices_per_shard=int(env.get("AZUREML_DEVICES_PER_SHARD", "500")),
            job_timeout_seconds=job_timeout_seconds(env),
        )

    def ml_client(self):
        """The workspace's ``MLClient``, authenticated with ``DefaultAzureCredential``."""
        from azure.ai.ml import MLClient

        from scoring.azure_storage import azure_credential

        return MLClient(azure_credential(), self.subscription_id, self.resource_group, self.workspace_name)

    def blob_service_client(self):
        """The storage account of Pipes context and messages (``scoring.azure_storage.service_client``)."""
        from scoring.azure_storage import service_client

        return service_client(self.storage_account_url, self.storage_connection_string)

    def describe(self) -> str:
        return (f"Azure ML cluster {self.cluster_name} of workspace {self.workspace_name} "
                f"({self.max_jobs_in_flight} jobs in flight)")

    def run_shards(self, context, tasks, sql, blob):
        if not tasks:
            return []
        job_env = {ACCOUNT_URL_VAR: self.storage_account_url, SQL_URL_VAR: job_sql_url(self.sql_url or sql.url),
                   SQL_AUTH_VAR: self.sql_auth or getattr(sql, "auth", "password"),
                   BLOB_URL_VAR: self.blob_url or job_blob_url(blob)}
        service = self.blob_service_client()
        try:
            service.create_container(self.container)
        except ResourceExistsError:
            pass
        ml_client = RunJobs(self.ml_client(), self.poll_retry_delays_seconds, log=context.log)
        environment = self.environment or checkout_environment(DEFAULT_ENVIRONMENT)  # once per run
        attempt = uuid.uuid4().hex[:6]  # a retried run must not collide with its earlier jobs' names
        jobs = [ShardJob(task, f"bscore_{context.run.run_id[:8]}_{attempt}_{task.label}") for task in tasks]
        results: list[ShardSummary | TrainingSummary | None] = [None] * len(jobs)
        reports: list[dict | None] = [None] * len(jobs)
        with ThreadPoolExecutor(max_workers=max(1, self.max_jobs_in_flight), thread_name_prefix="azureml") as pool:
            futures = {pool.submit(self._run_job, context, ml_client, service, job, job_env, environment): i
                       for i, job in enumerate(jobs)}
            try:
                for done, future in enumerate(as_completed(futures), start=1):
                    i = futures[future]
                    results[i], reports[i] = future.result()
                    context.log.info(f"{jobs[i].name}: " + shard_log_line(results[i], done, len(jobs)))
            except BaseException:  # a failed job, or the run interrupted (cancelled, timed out)
                for future in futures:
                    future.cancel()  # shards not submitted yet never will be
                canceled = ml_client.cancel_unfinished(context.log)
                context.log.warning(f"run stopping: canceled {len(canceled)} unfinished Azure ML job(s)")
                raise
        context.add_asset_metadata(job_metadata(reports))
        return results

    def job_spec(self, job: ShardJob, run_id: str, job_env: dict, environment: str | None = None):
        """The command job of one shard, as it is sent to the workspace (Pipes adds its variables)."""
        from azure.ai.ml import command

        return command(
            name=job.name,
            display_name=job.task.label,
            experiment_name=self.experiment_name,
            command=self.job_command,
            environment=environment or self.environment or checkout_environment(DEFAULT_ENVIRONMENT),
            compute=self.cluster_name,
            environment_variables=job_env,
            tags={RUN_ID_TAG: run_id, "shard": job.task.label},
            timeout=self.job_timeout_seconds,
        )

    def _run_job(self, context, ml_client, service, job: ShardJob, job_env: dict,
                 environment: str) -> tuple[ShardSummary | TrainingSummary, dict]:
        from dagster_azure.pipes import (
            PipesAzureBlobStorageContextInjector,
            PipesAzureBlobStorageMessageReader,
            PipesAzureMLClient,
        )

        # One Pipes client per job: a message reader keeps its chunk counter per instance.
        pipes = PipesAzureMLClient(
            client=ml_client,
            context_injector=PipesAzureBlobStorageContextInjector(container=self.container, client=service),
            message_reader=PipesAzureBlobStorageMessageReader(
                container=self.container, client=service, interval=self.message_interval_seconds),
            poll_interval_seconds=self.poll_interval_seconds,
        )
        spec = self.job_spec(job, context.run.run_id, job_env, environment)
        started = time.perf_counter()
        try:
            invocation = pipes.run(context=context, command=spec, extras={"task": job.task.to_json()})
            reported = [m for m in invocation.get_custom_messages()
                        if isinstance(m, dict) and m.get("shard") == job.task.label]
            if not reported:
                raise RuntimeError("the job completed without reporting its shard's summary")
        except Exception as exc:
            raise dg.Failure(
                description=f"Azure ML job {job.name} ({job.task.label}) failed: {redact_query_strings(exc)}. "
                            f"Logs: {log_location(ml_client, job.name, self.experiment_name)}",
                metadata={"azureml_job": job.name},
            ) from exc
        summary = summary_from_json(reported[-1])
        report = {"job": job.name, **summary.totals(), "wall_seconds": round(time.perf_counter() - started, 3)}
        return summary, report

    def cancel_orphan_jobs(self, run_status, log=None) -> list[OrphanJob]:
        """Cancel this experiment's unfinished jobs whose Dagster run is over or unknown (a host that
        died left them running); returns them. ``run_status`` maps a run id to its status name."""
        ml_client = self.ml_client()
        orphans = orphan_jobs(ml_client.jobs.list(), run_status, self.experiment_name)
        for orphan in orphans:
            ml_client.jobs.begin_cancel(orphan.name)
            if log is not None:
                log.info(f"canceled Azure ML job {orphan.name}: its run {orphan.run_id} is {orphan.run_status}")
        return orphans


def log_location(ml_client, job_name: str, experiment: str) -> str:
    """The job's Azure ML studio page, or how to find it when the service cannot say."""
    try:
        url = ml_client.jobs.get(job_name).studio_url
    except Exception:
        url = None
    return url or f"Azure ML studio, experiment {experiment}, job {job_name}"


def job_metadata(reports: list[dict]) -> dict:
    """Materialization metadata from what every job reported (scoring or training shards)."""
    summed = ("rows_scored", "anomalies", "score_seconds") if "rows_scored" in reports[0] else (
        "promoted", "refused", "train_seconds")
    return {
        "azureml_jobs": dg.MetadataValue.json(reports),
        **{f"azureml_{name}": round(sum(r[name] for r in reports), 3) for name in summed},
        "azureml_slowest_job_seconds": max(r["wall_seconds"] for r in reports),
    }
