"""Azure ML jobs that end with their run.

A scoring run submits command jobs and waits on them; nothing about that may leave a job
billing after the run is over:

- Polling is patient: a transient service error while asking a job's status (a dropped
  connection, 408/429/5xx) is retried after 5, 10, 20, 40 and 80 s instead of failing the run
  (and with it every other job of the run).
- Every job carries ``limits.timeout`` (``AZUREML_JOB_TIMEOUT_SECONDS``), so Azure ML ends it
  even when no one is left to cancel it.
- A run that fails, is cancelled or times out (run monitoring terminates it) cancels every job it
  submitted that has not finished; a job whose submission was under way at that moment cancels
  itself as soon as the service names it.
- A host that died takes no one's ``finally`` with it: run monitoring marks its run failed after
  ``max_runtime_seconds``, and the ``azureml_orphan_jobs`` sensor cancels the jobs whose run is
  finished or gone (:func:`orphan_jobs`), on the next start of the daemon.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from azure.core.exceptions import HttpResponseError

from resources.outages import is_outage

RUN_ID_TAG = "dagster_run_id"
FINISHED_JOB_STATUSES = frozenset({"Completed", "Failed", "Canceled", "CancelRequested", "NotResponding"})
POLL_RETRY_DELAYS_SECONDS = (5, 10, 20, 40, 80)
TRANSIENT_HTTP_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
DEFAULT_JOB_TIMEOUT_SECONDS = 3600


def is_transient_service_error(error: BaseException) -> bool:
    """An outage (``resources.outages``) or an HTTP answer that says "try again later"."""
    if isinstance(error, HttpResponseError) and getattr(error, "status_code", None) in TRANSIENT_HTTP_STATUSES:
        return True
    return is_outage(error)


class PatientJobs:
    """``MLClient.jobs`` whose ``get`` (the Pipes client's status poll) outlasts transient errors."""

    def __init__(self, jobs, delays: Iterable[float] = POLL_RETRY_DELAYS_SECONDS,
                 sleep: Callable[[float], None] = time.sleep, log=None):
        self._jobs, self.delays, self.sleep, self.log = jobs, tuple(delays), sleep, log

    def get(self, name: str):
        for delay in (*self.delays, None):
            try:
                return self._jobs.get(name)
            except Exception as exc:
                if delay is None or not is_transient_service_error(exc):
                    raise
                if self.log is not None:
                    self.log.warning(f"Azure ML job {name}: status unavailable ({type(exc).__name__}); "
                                     f"asking again in {delay:g}s")
                self.sleep(delay)

    def __getattr__(self, attribute):
        return getattr(self._jobs, attribute)


class RunJobs:
    """The ``MLClient`` one run's jobs go through: it remembers what it submitted, so the run
    can cancel all of it, and refuses to submit once the run is stopping."""

    def __init__(self, ml_client, delays: Iterable[float] = POLL_RETRY_DELAYS_SECONDS,
                 sleep: Callable[[float], None] = time.sleep, log=None):
        self._client = ml_client
        self.jobs = PatientJobs(ml_client.jobs, delays, sleep, log)
        self.submitted: list[str] = []
        self.stopping = threading.Event()
        self._lock = threading.Lock()

    def create_or_update(self, job):
        if self.stopping.is_set():
            raise RuntimeError(f"Azure ML job {job.name} not submitted: its run is stopping")
        created = self._client.create_or_update(job)
        with self._lock:
            self.submitted.append(created.name)
        if self.stopping.is_set():  # the run began stopping while this job was being submitted
            self._cancel(created.name)
        return created

    def cancel_unfinished(self, log=None) -> list[str]:
        """Stop submitting, and cancel every submitted job not yet finished; returns their names."""
        self.stopping.set()
        with self._lock:
            names = list(self.submitted)
        canceled = []
        for name in names:
            try:
                status = self._client.jobs.get(name).status
            except Exception:
                status = None  # unknown: cancelling a finished job is harmless
            if status in FINISHED_JOB_STATUSES:
                continue
            if self._cancel(name, log):
                canceled.append(name)
        return canceled

    def _cancel(self, name: str, log=None) -> bool:
        try:
            self._client.jobs.begin_cancel(name)
        except Exception as exc:
            if log is not None:
                log.warning(f"Azure ML job {name} could not be canceled: {type(exc).__name__}: {exc}")
            return False
        if log is not None:
            log.info(f"canceled Azure ML job {name}")
        return True


@dataclass(frozen=True)
class OrphanJob:
    """An unfinished Azure ML job whose Dagster run is over (or unknown to the instance)."""

    name: str
    run_id: str
    run_status: str  # the run's status, or "missing"


def orphan_jobs(jobs: Iterable, run_status: Callable[[str], str | None], experiment: str) -> list[OrphanJob]:
    """The unfinished jobs of ``experiment`` tagged with a run that is no longer running.

    Parameters
    ----------
    jobs : iterable of azure.ai.ml.entities.Job
        The workspace's jobs (``MLClient.jobs.list()``).
    run_status : callable
        A run id's Dagster status name (``"STARTED"``, ``"FAILURE"``, …), or None when the
        instance has no such run.
    experiment : str
        Only this experiment's jobs are bscore's to cancel.

    Returns
    -------
    list of OrphanJob
    """
    live = {"QUEUED", "NOT_STARTED", "STARTING", "STARTED", "CANCELING"}
    found = []
    for job in jobs:
        run_id = (getattr(job, "tags", None) or {}).get(RUN_ID_TAG)
        if not run_id or getattr(job, "experiment_name", None) != experiment or job.status in FINISHED_JOB_STATUSES:
            continue
        status = run_status(run_id)
        if status not in live:
            found.append(OrphanJob(job.name, run_id, status or "missing"))
    return found
