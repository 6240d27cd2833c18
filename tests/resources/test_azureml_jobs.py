"""Azure ML jobs that end with their run (``resources/azureml_jobs.py``), against a stand-in of
``MLClient.jobs`` that records every call (no workspace is reachable here); and a shard's job
sent through a real ``MLClient`` whose HTTP transport alone is replaced."""

from __future__ import annotations

import json
import threading
from types import SimpleNamespace

import pandas as pd
import pytest
from azure.ai.ml import MLClient
from azure.core.credentials import AccessToken, AccessTokenInfo
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError, ServiceResponseError
from azure.core.pipeline.transport import HttpResponse, HttpTransport

from resources.azureml import AzureMLComputeBackend, ShardJob, job_timeout_seconds
from resources.azureml_jobs import POLL_RETRY_DELAYS_SECONDS, PatientJobs, RunJobs, orphan_jobs
from scoring.shards import ShardTask


def http_error(status: int) -> HttpResponseError:
    error = HttpResponseError(message=f"HTTP {status}")
    error.status_code = status
    return error


class RecordingJobs:
    """``MLClient.jobs``: statuses by name, errors to raise on the next ``get``s, cancel calls."""

    def __init__(self, statuses: dict[str, str], failures=()):
        self.statuses, self.failures = dict(statuses), list(failures)
        self.gets, self.canceled = 0, []

    def get(self, name):
        self.gets += 1
        if self.failures:
            raise self.failures.pop(0)
        return SimpleNamespace(name=name, status=self.statuses[name])

    def begin_cancel(self, name):
        self.canceled.append(name)
        self.statuses[name] = "CancelRequested"

    def list(self):
        return [SimpleNamespace(name=name, status=status, experiment_name=experiment, tags=tags)
                for name, (status, experiment, tags) in self.listed.items()]


class RecordingClient:
    def __init__(self, jobs: RecordingJobs, on_create=None):
        self.jobs, self.on_create, self.created = jobs, on_create, []

    def create_or_update(self, job):
        if self.on_create:
            self.on_create()
        self.created.append(job.name)
        self.jobs.statuses[job.name] = "Queued"
        return SimpleNamespace(name=job.name, status="Queued")


def test_status_poll_outlasts_transient_errors_with_back_off():
    waits = []
    jobs = RecordingJobs({"j1": "Running"}, failures=[ServiceResponseError("connection reset"), http_error(503),
                                                     http_error(429)])
    patient = PatientJobs(jobs, sleep=waits.append)

    assert patient.get("j1").status == "Running"
    assert waits == [5, 10, 20] and jobs.gets == 4


def test_status_poll_gives_up_after_80_seconds_and_never_retries_a_real_error():
    waits = []
    always_down = RecordingJobs({"j1": "Running"}, failures=[http_error(502)] * 10)
    with pytest.raises(HttpResponseError, match="HTTP 502"):
        PatientJobs(always_down, sleep=waits.append).get("j1")
    assert waits == list(POLL_RETRY_DELAYS_SECONDS) == [5, 10, 20, 40, 80]

    waits.clear()
    missing = RecordingJobs({}, failures=[ResourceNotFoundError("no such job"), http_error(403)])
    with pytest.raises(ResourceNotFoundError):
        PatientJobs(missing, sleep=waits.append).get("j1")
    with pytest.raises(HttpResponseError, match="HTTP 403"):
        PatientJobs(missing, sleep=waits.append).get("j1")
    assert waits == []


def test_stopping_run_cancels_its_unfinished_jobs_only():
    jobs = RecordingJobs({})
    client = RunJobs(RecordingClient(jobs))
    for name in ("done", "failed", "running", "queued"):
        client.create_or_update(SimpleNamespace(name=name))
    jobs.statuses.update(done="Completed", failed="Failed", running="Running")

    assert client.cancel_unfinished() == ["running", "queued"]
    assert jobs.canceled == ["running", "queued"]
    with pytest.raises(RuntimeError, match="late not submitted: its run is stopping"):
        client.create_or_update(SimpleNamespace(name="late"))
    assert "late" not in jobs.statuses


def test_a_job_submitted_while_the_run_stops_cancels_itself():
    jobs = RecordingJobs({})
    submitting, stopped = threading.Event(), threading.Event()

    def slow_submission():
        submitting.set()
        stopped.wait(5)

    client = RunJobs(RecordingClient(jobs, on_create=slow_submission))
    worker = threading.Thread(target=client.create_or_update, args=(SimpleNamespace(name="racing"),))
    worker.start()
    submitting.wait(5)
    assert client.cancel_unfinished() == []  # the service has not named it yet
    stopped.set()
    worker.join(5)
    assert jobs.canceled == ["racing"]


def test_orphans_are_unfinished_jobs_of_the_experiment_whose_run_is_over_or_gone():
    runs = {"live": "STARTED", "queued": "QUEUED", "failed": "FAILURE", "canceled": "CANCELED", "done": "SUCCESS"}
    jobs = RecordingJobs({})
    jobs.listed = {
        "of-live": ("Running", "bscore-scoring", {"dagster_run_id": "live"}),
        "of-queued": ("Queued", "bscore-scoring", {"dagster_run_id": "queued"}),
        "of-failed": ("Running", "bscore-scoring", {"dagster_run_id": "failed"}),
        "of-canceled": ("Preparing", "bscore-scoring", {"dagster_run_id": "canceled"}),
        "of-done": ("Finalizing", "bscore-scoring", {"dagster_run_id": "done"}),
        "of-deleted": ("Running", "bscore-scoring", {"dagster_run_id": "deleted"}),
        "finished": ("Completed", "bscore-scoring", {"dagster_run_id": "failed"}),
        "someone-elses": ("Running", "training", {"dagster_run_id": "failed"}),
        "untagged": ("Running", "bscore-scoring", {}),
    }
    found = orphan_jobs(jobs.list(), runs.get, "bscore-scoring")
    assert [(o.name, o.run_status) for o in found] == [
        ("of-failed", "FAILURE"), ("of-canceled", "CANCELED"), ("of-done", "SUCCESS"), ("of-deleted", "missing")]


def test_every_job_gets_the_configured_timeout(monkeypatch):
    assert job_timeout_seconds({}) == 3600
    assert job_timeout_seconds({"AZUREML_JOB_TIMEOUT_SECONDS": "900"}) == 900
    for bad in ("0", "59", "1h", ""):
        with pytest.raises(ValueError, match=f"AZUREML_JOB_TIMEOUT_SECONDS={bad!r} must be a whole number"):
            job_timeout_seconds({"AZUREML_JOB_TIMEOUT_SECONDS": bad})
    backend = AzureMLComputeBackend.from_env({
        "AZUREML_SUBSCRIPTION_ID": "sub", "AZUREML_RESOURCE_GROUP": "rg", "AZUREML_WORKSPACE": "ws",
        "AZUREML_STORAGE_ACCOUNT": "jobs", "AZUREML_JOB_TIMEOUT_SECONDS": "1800", "AZUREML_ENVIRONMENT": "env:7"})
    assert (backend.job_timeout_seconds, backend.environment) == (1800, "env:7")


class WorkspaceTransport(HttpTransport):
    """The HTTP transport under a real ``MLClient``: records requests, answers a PUT with its body."""

    def __init__(self):
        self.requests = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def open(self):
        pass

    def close(self):
        pass

    def send(self, request, **kwargs):
        self.requests.append(request)
        if request.method == "PUT":
            body = json.loads(request.body)
            return JsonResponse(request, 200, {**body, "id": request.url.split("?")[0],
                                               "name": request.url.split("/jobs/")[1].split("?")[0]})
        return JsonResponse(request, 404, {"error": {"code": "NotFound", "message": f"{request.url} not here"}})


class JsonResponse(HttpResponse):
    def __init__(self, request, status: int, body: dict):
        super().__init__(request, None)
        self.status_code, self.reason, self._body = status, "OK" if status < 400 else "Not Found", json.dumps(body).encode()
        self.headers, self.content_type = {"content-type": "application/json"}, "application/json"

    def body(self):
        return self._body

    def json(self):
        return json.loads(self._body)

    def text(self, encoding=None):
        return self._body.decode()


class TokenCredential:
    def get_token(self, *scopes, **kwargs):
        return AccessToken("token", 4102444800)

    def get_token_info(self, *scopes, **kwargs):
        return AccessTokenInfo("token", 4102444800)


def test_shard_job_reaches_the_workspace_with_its_timeout_and_this_checkouts_environment(bscore_home):
    """The backend's job spec through a real ``MLClient`` (validation, serialization); only the
    HTTP transport is replaced: the PUT body is what Azure ML would receive."""
    backend = AzureMLComputeBackend.from_env({
        "AZUREML_SUBSCRIPTION_ID": "00000000-0000-0000-0000-000000000000", "AZUREML_RESOURCE_GROUP": "rg",
        "AZUREML_WORKSPACE": "ws", "AZUREML_STORAGE_ACCOUNT": "jobs", "AZUREML_JOB_TIMEOUT_SECONDS": "5400"})
    task = ShardTask("shard-0003", ("d1", "d2"), (pd.Timestamp("2026-03-01T01:00"),), ("1",), "token")
    spec = backend.job_spec(ShardJob(task, "bscore_run1_abc_shard-0003"), "run-1",
                            {"BSCORE_SQL_URL": "mssql+pyodbc://@srv.database.windows.net/db", "BSCORE_SQL_AUTH": "entra"})
    transport = WorkspaceTransport()
    MLClient(TokenCredential(), backend.subscription_id, backend.resource_group, backend.workspace_name,
             transport=transport).create_or_update(spec)

    [put] = [r for r in transport.requests if r.method == "PUT"]
    assert [r.method for r in transport.requests] == ["PUT"]  # nothing resolved: no @latest lookup
    assert put.url.split("?")[0].endswith("/workspaces/ws/jobs/bscore_run1_abc_shard-0003")
    properties = json.loads(put.body)["properties"]
    assert properties["limits"] == {"timeout": "PT1H30M", "jobLimitsType": "Command"}
    version = backend.environment.split(":")[1]
    assert properties["environmentId"].endswith(f"/workspaces/ws/environments/bscore-scoring/versions/{version}")
    assert properties["computeId"].endswith("/workspaces/ws/computes/bscore-cpu")
    assert properties["tags"]["dagster_run_id"] == "run-1" and properties["experimentName"] == "bscore-scoring"
    assert properties["environmentVariables"]["BSCORE_SQL_AUTH"] == "entra"


def test_training_shard_job_reaches_the_workspace_as_a_scoring_shard_does(bscore_home):
    """A training shard's job is built by the same spec (the task travels over Pipes, not in it)."""
    from scoring.detectors import FitOptions
    from scoring.device_training import GateLimits
    from scoring.training_task import TrainingTask

    backend = AzureMLComputeBackend.from_env({
        "AZUREML_SUBSCRIPTION_ID": "00000000-0000-0000-0000-000000000000", "AZUREML_RESOURCE_GROUP": "rg",
        "AZUREML_WORKSPACE": "ws", "AZUREML_STORAGE_ACCOUNT": "jobs"})
    start = pd.Timestamp("2026-03-01T00:00")
    task = TrainingTask("training-0001", ("d1", "d2"), start, start + pd.Timedelta(hours=2),
                        start + pd.Timedelta(hours=1), "robust", False, FitOptions(), GateLimits(0.02, 0.1))
    spec = backend.job_spec(ShardJob(task, "bscore_run1_abc_training-0001"), "run-1",
                            {"BSCORE_SQL_URL": "mssql+pyodbc://@srv.database.windows.net/db", "BSCORE_SQL_AUTH": "entra"})
    transport = WorkspaceTransport()
    MLClient(TokenCredential(), backend.subscription_id, backend.resource_group, backend.workspace_name,
             transport=transport).create_or_update(spec)

    [put] = [r for r in transport.requests if r.method == "PUT"]
    assert put.url.split("?")[0].endswith("/workspaces/ws/jobs/bscore_run1_abc_training-0001")
    properties = json.loads(put.body)["properties"]
    assert properties["command"] == "python -m scoring.entrypoint" and properties["displayName"] == "training-0001"
    assert properties["limits"] == {"timeout": "PT1H", "jobLimitsType": "Command"}
    assert properties["tags"] == {"dagster_run_id": "run-1", "shard": "training-0001"}
    assert properties["computeId"].endswith("/workspaces/ws/computes/bscore-cpu")
