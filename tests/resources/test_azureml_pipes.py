"""The Azure ML backend end to end through Dagster Pipes, with blobs on Azurite.

``PipesAzureMLClient.run`` runs for real; only ``MLClient`` is replaced, by a stand-in that
starts each job's command as a local process with the job's environment variables (what
the Pipes context injector and message reader put there) and reports its status as the
service's ``jobs.get`` does. The job is the real ``python -m scoring.entrypoint``.
"""

from __future__ import annotations

import copy
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa
from azure.ai.ml.entities import JobService
from azure.core.exceptions import ServiceResponseError
from azure.storage.blob import BlobServiceClient

from bscore_assets.operations import Operations, local_instance
from bscore_assets.settings import Settings
from bscore_assets.storage import read_prediction_partition
from resources.azureml import AzureMLComputeBackend
from scoring.readings import readings_to_event_bodies
from scoring.simulate import simulate_readings
from tests.assets.conftest import forget_scoring_inputs

ROOT = Path(__file__).resolve().parents[2]
TRAIN_START = pd.Timestamp("2026-03-01T00:00")
SCORE_START = pd.Timestamp("2026-03-01T01:00")
HOUR = pd.Timedelta(hours=1)
DEVICES, SENSORS = 3, 2


class LocalJobs:
    """``MLClient.jobs`` for jobs that are local processes."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.started: dict[str, tuple] = {}
        self.canceled: set[str] = set()
        self.cancel_calls: list[str] = []
        self.unanswered_gets = 0  # status requests still to fail as a dropped connection does
        self.prefix = lambda job: ""  # shell put before a job's command (to hold it back)

    def start(self, job) -> None:
        log = self.workdir / job.name / "user_logs" / "std_log.txt"
        log.parent.mkdir(parents=True)
        # The cluster's image has `python` with the scoring package; here it is this venv's.
        env = {**os.environ, **job.environment_variables,
               "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
        with log.open("wb") as out:
            process = subprocess.Popen(self.prefix(job) + job.command, shell=True, env=env, cwd=ROOT, stdout=out,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        self.started[job.name] = (job, process, log)

    def get(self, name: str):
        if self.unanswered_gets > 0:
            self.unanswered_gets -= 1
            raise ServiceResponseError("Connection aborted: the workspace closed the connection")
        job, process, log = self.started[name]
        code = process.poll()
        if code is None:
            status = "Running"
        elif name in self.canceled:
            status = "Canceled"
        else:
            status = "Completed" if code == 0 else "Failed"
        reported = copy.copy(job)
        reported._status = status
        reported.services = {"Studio": JobService(endpoint=log.as_uri())}
        return reported

    def begin_cancel(self, name: str) -> None:
        self.cancel_calls.append(name)
        process = self.started[name][1]
        if process.poll() is None:
            self.canceled.add(name)
            os.killpg(process.pid, signal.SIGTERM)  # the job's shell and what it started

    def environment(self, name: str) -> dict:
        return self.started[name][0].environment_variables


class LocalMLClient:
    """The two things ``PipesAzureMLClient`` asks of ``MLClient``: create a job, and ``jobs``."""

    def __init__(self, workdir: Path):
        self.jobs = LocalJobs(workdir)

    def create_or_update(self, job):
        self.jobs.start(job)
        return self.jobs.get(job.name)


STAND_INS: dict[str, LocalMLClient] = {}


class StandInAzureMLBackend(AzureMLComputeBackend):
    """The Azure ML backend with the workspace's ``MLClient`` replaced by local processes."""

    jobs_dir: str

    def ml_client(self):
        return STAND_INS.setdefault(self.jobs_dir, LocalMLClient(Path(self.jobs_dir)))


@pytest.fixture
def platform(bscore_home, azurite, monkeypatch) -> Operations:
    """A local platform with a trained fleet and an hour of windows to score."""
    from definitions import build_defs

    # What the cluster's managed identity is to a real job: the job process's own credential.
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite.connection_string)
    settings = Settings.from_env()
    ops = Operations(settings, build_defs(settings), local_instance(settings))
    training = simulate_readings(DEVICES, SENSORS, TRAIN_START, 1, anomaly_rate=0.0, seed=21)
    scoring = simulate_readings(DEVICES, SENSORS, SCORE_START, 1, anomaly_rate=0.02, seed=22)
    ops.resources["events"].publish(readings_to_event_bodies(pd.concat([training, scoring])))
    ops.train(None, TRAIN_START, TRAIN_START)
    return ops


def on_azureml(ops: Operations, backend: AzureMLComputeBackend) -> Operations:
    """The same platform and instance with the compute resource swapped."""
    defs = ops.defs
    swapped = dg.Definitions(assets=defs.assets, jobs=defs.jobs, schedules=defs.schedules, sensors=defs.sensors,
                             resources={**defs.resources, "compute": backend})
    return Operations(ops.settings, swapped, ops.instance)


def stand_in_backend(azurite, tmp_path, container: str, **fields) -> StandInAzureMLBackend:
    return StandInAzureMLBackend(**{
        "subscription_id": "00000000-0000-0000-0000-000000000000", "resource_group": "rg", "workspace_name": "ws",
        "environment": "bscore-scoring:0123456789abcdef",
        "storage_account_url": azurite.account_url, "storage_connection_string": azurite.connection_string,
        "container": container, "devices_per_shard": 2, "max_jobs_in_flight": 2, "poll_interval_seconds": 0.2,
        "message_interval_seconds": 0.5, "jobs_dir": str(tmp_path / "azureml-jobs"), **fields})


def sorted_predictions(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(["device", "sensor", "ts"]).reset_index(drop=True)


def test_azureml_pipes_round_trip_reports_metadata_and_matches_local(platform, azurite, tmp_path):
    sql = platform.resources["sql"]
    platform.score(SCORE_START, SCORE_START)
    local = sorted_predictions(sql.read_predictions(SCORE_START, SCORE_START + HOUR))

    container = azurite.new_container_name()
    backend = stand_in_backend(azurite, tmp_path, container)
    forget_scoring_inputs(platform)  # else the unchanged hour is reported, not scored again
    *_, result = on_azureml(platform, backend).score(SCORE_START, SCORE_START)
    remote = sorted_predictions(sql.read_predictions(SCORE_START, SCORE_START + HOUR))

    assert len(local) == DEVICES * SENSORS * 720
    pd.testing.assert_frame_equal(remote, local, check_exact=False, atol=1e-12, rtol=0)

    jobs = STAND_INS[backend.jobs_dir].jobs
    assert len(jobs.started) == 2  # 3 devices, 2 per shard
    for name in jobs.started:
        assert jobs.get(name).status == "Completed"
        env = jobs.environment(name)
        assert {"DAGSTER_PIPES_CONTEXT", "DAGSTER_PIPES_MESSAGES"} <= set(env)
        # The job is told where to read and write, not given the data.
        assert env["BSCORE_SQL_URL"] == sql.url and env["BSCORE_BLOB_URL"] == platform.resources["blob"].root
    # Each job wrote its own part of every partition, named by its devices; readers see them whole.
    blob = platform.resources["blob"]
    for sensor in map(str, range(1, SENSORS + 1)):
        parts = [k for k in blob.list(f"predictions/{SCORE_START:%Y-%m-%dT%H}/sensor={sensor}/") if "part-" in k]
        # The local run's parts were removed when the Azure ML run's manifest replaced them.
        assert sorted(k.rsplit("/", 1)[1].rsplit("--", 1)[0] for k in parts) == ["part-1--2", "part-3--3"]
        stored = read_prediction_partition(blob, SCORE_START, sensor)
        expected = local[local["sensor"] == sensor]
        pd.testing.assert_frame_equal(sorted_predictions(stored).astype({"model_version": str}),
                                      expected.reset_index(drop=True).astype({"model_version": str}),
                                      check_exact=False, atol=1e-12, rtol=0, check_dtype=False)
    records = platform.instance.fetch_materializations(dg.AssetKey("sensor_predictions"), limit=100).records
    materializations = [r.asset_materialization for r in records if r.run_id == result.run_id]
    assert len(materializations) == SENSORS  # one hour x each sensor
    for materialization in materializations:
        meta = {k: v.value for k, v in materialization.metadata.items()}
        reports = meta["azureml_jobs"]
        assert sorted(r["job"] for r in reports) == sorted(jobs.started)
        assert sorted(r["shard"] for r in reports) == ["shard-0000", "shard-0001"]
        assert sorted(r["rows_scored"] for r in reports) == [SENSORS * 720, 2 * SENSORS * 720]
        # What the jobs reported covers the whole run, as do the predictions written.
        assert meta["azureml_rows_scored"] == len(local)
        assert meta["azureml_anomalies"] == int(local["is_anomaly"].sum()) > 0
        assert all(r["score_seconds"] >= 0 and r["wall_seconds"] > 0 for r in reports)
    blobs = BlobServiceClient.from_connection_string(azurite.connection_string).get_container_client(container)
    assert list(blobs.list_blob_names(name_starts_with="staging/")) == []


def test_azureml_failed_job_fails_the_run_with_its_name(platform, azurite, tmp_path, monkeypatch):
    # The job fails while scoring: the database it is told to read does not exist where the
    # cluster runs. (A bad model no longer fails anything but its own device: it is refused.)
    backend = stand_in_backend(azurite, tmp_path, azurite.new_container_name(),
                               sql_url=f"sqlite:///{tmp_path / 'not-mounted-on-the-cluster' / 'bscore.db'}")

    with pytest.raises(RuntimeError) as failure:
        on_azureml(platform, backend).score(SCORE_START, SCORE_START)

    jobs = STAND_INS[backend.jobs_dir].jobs
    failed = [name for name in jobs.started if jobs.get(name).status == "Failed"]
    assert failed
    [run] = platform.instance.get_runs(limit=1)
    assert run.run_id in str(failure.value) and run.status == dg.DagsterRunStatus.FAILURE
    [step_failure] = platform.instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
    message = step_failure.dagster_event.step_failure_data.error.message
    assert any(name in message for name in failed)
    # The job's own exception came back over Pipes and is on the run's event log.
    closed = [e.dagster_event.engine_event_data.error for e in platform.instance.all_logs(
        run.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT) if "closed with exception" in e.message]
    assert closed[0].cls_name == "OperationalError" and "unable to open database file" in closed[0].message
    assert any((Path(backend.jobs_dir) / name / "user_logs" / "std_log.txt").as_uri() in message for name in failed)
    assert platform.resources["sql"].read_predictions(SCORE_START, SCORE_START + HOUR).empty


def test_azureml_backend_from_env_keeps_the_secret_out_of_config(bscore_home, monkeypatch):
    from bscore_assets.definitions import build_resources

    env = {"BSCORE_COMPUTE": "azureml", "AZUREML_SUBSCRIPTION_ID": "sub", "AZUREML_RESOURCE_GROUP": "rg",
           "AZUREML_WORKSPACE": "ws", "AZUREML_STORAGE_ACCOUNT": "bscorejobs", "AZUREML_MAX_JOBS": "8",
           "AZUREML_DEVICES_PER_SHARD": "250", "AZURE_STORAGE_CONNECTION_STRING": "AccountKey=secret"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    backend = build_resources(Settings.from_env())["compute"]
    assert isinstance(backend, AzureMLComputeBackend)
    assert (backend.workspace_name, backend.cluster_name) == ("ws", "bscore-cpu")
    assert re.fullmatch(r"bscore-scoring:[0-9a-f]{16}", backend.environment)  # this checkout's, not @latest
    assert backend.job_timeout_seconds == 3600
    assert backend.storage_account_url == "https://bscorejobs.blob.core.windows.net"
    assert (backend.max_jobs_in_flight, backend.devices_per_shard) == (8, 250)
    assert backend.storage_connection_string == dg.EnvVar("AZURE_STORAGE_CONNECTION_STRING")
    assert "secret" not in repr(backend)
    monkeypatch.delenv("AZUREML_WORKSPACE")
    monkeypatch.delenv("AZUREML_STORAGE_ACCOUNT")
    with pytest.raises(ValueError, match="AZUREML_WORKSPACE, AZUREML_STORAGE_ACCOUNT"):
        AzureMLComputeBackend.from_env()


def test_azureml_failure_messages_drop_url_query_strings():
    from resources.azureml import redact_query_strings

    message = redact_query_strings(RuntimeError("GET https://a.blob.core.windows.net/c/x?sv=1&sig=SECRET failed"))
    assert "SECRET" not in message and "https://a.blob.core.windows.net/c/x?<redacted>" in message


def test_azureml_jobs_carry_the_timeout_and_status_polls_outlast_a_flaky_workspace(platform, azurite, tmp_path):
    backend = stand_in_backend(azurite, tmp_path, azurite.new_container_name(), job_timeout_seconds=1800,
                               poll_retry_delays_seconds=[0.05, 0.1, 0.2, 0.4, 0.8])
    jobs = STAND_INS.setdefault(backend.jobs_dir, LocalMLClient(Path(backend.jobs_dir))).jobs
    jobs.unanswered_gets = 4  # the first status polls fail as a dropped connection does

    on_azureml(platform, backend).score(SCORE_START, SCORE_START)

    assert jobs.unanswered_gets == 0 and jobs.cancel_calls == []
    assert len(platform.resources["sql"].read_predictions(SCORE_START, SCORE_START + HOUR)) == DEVICES * SENSORS * 720
    for name, (job, _, _) in jobs.started.items():
        assert job.limits.timeout == 1800  # Azure ML ends the job even if no one is left to cancel it
        assert job.environment == "bscore-scoring:0123456789abcdef"
        assert jobs.get(name).status == "Completed"


def held_back_jobs(backend, held) -> LocalJobs:
    """The stand-in's jobs, those for which ``held(job)`` is true starting only after 60 s."""
    jobs = STAND_INS.setdefault(backend.jobs_dir, LocalMLClient(Path(backend.jobs_dir))).jobs
    jobs.prefix = lambda job: "sleep 60 && " if held(job) else ""
    return jobs


def test_azureml_failed_job_cancels_the_runs_other_jobs(platform, azurite, tmp_path):
    # shard-0000 fails at once (its database is not where the cluster runs); shard-0001 is still running.
    backend = stand_in_backend(azurite, tmp_path, azurite.new_container_name(),
                               sql_url=f"sqlite:///{tmp_path / 'not-mounted-on-the-cluster' / 'bscore.db'}")
    jobs = held_back_jobs(backend, lambda job: job.display_name != "shard-0000")

    started = time.monotonic()
    with pytest.raises(RuntimeError, match="shard-0000"):
        on_azureml(platform, backend).score(SCORE_START, SCORE_START)

    assert time.monotonic() - started < 45  # the run did not wait for the held-back job
    [failed] = [n for n in jobs.started if jobs.get(n).status == "Failed"]
    [running] = [n for n in jobs.started if n != failed]
    assert jobs.cancel_calls == [running] and jobs.get(running).status == "Canceled"


def test_azureml_interrupted_run_cancels_every_job(platform, azurite, tmp_path):
    """A run cancelled from the UI, or terminated by run monitoring at max_runtime_seconds, is
    interrupted (SIGINT in the run's process): every job it submitted is cancelled."""
    backend = stand_in_backend(azurite, tmp_path, azurite.new_container_name())
    jobs = held_back_jobs(backend, lambda job: True)

    def interrupt_once_both_jobs_run():
        deadline = time.monotonic() + 60
        while len(jobs.started) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        if len(jobs.started) == 2:
            os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt_once_both_jobs_run, daemon=True).start()
    with pytest.raises(RuntimeError, match="scoring_job failed"):
        on_azureml(platform, backend).score(SCORE_START, SCORE_START)

    assert sorted(jobs.cancel_calls) == sorted(jobs.started) and len(jobs.started) == 2
    assert all(jobs.get(name).status == "Canceled" for name in jobs.started)
    [run] = platform.instance.get_runs(limit=1)
    assert run.status == dg.DagsterRunStatus.FAILURE


class RunReads:
    """What the run's own process reads of predictions: rows through the SQL readers (every table
    read goes through ``scoring.sql_read.read_table``) and blob parts. The jobs are processes of
    their own, so nothing they read is counted here."""

    def __init__(self, monkeypatch):
        import scoring.sql_read
        from resources.blob import LocalBlobStore

        self.sql: list[tuple[str, tuple | None, int]] = []  # (table, devices asked for, rows)
        self.parts: list[str] = []
        read_table, read_bytes = scoring.sql_read.read_table, LocalBlobStore.read_bytes

        def counted_read_table(engine, table, start=None, end=None, devices=None, sensors=None):
            rows = read_table(engine, table, start, end, devices, sensors)
            self.sql.append((table.name, None if devices is None else tuple(devices), len(rows)))
            return rows

        def counted_read_bytes(store, key):
            if key.startswith("predictions/") and "/part-" in key:
                self.parts.append(key)
            return read_bytes(store, key)

        monkeypatch.setattr(scoring.sql_read, "read_table", counted_read_table)
        monkeypatch.setattr(LocalBlobStore, "read_bytes", counted_read_bytes)

    def prediction_rows(self) -> int:
        return sum(rows for table, _, rows in self.sql if table in ("predictions", "prediction_staging"))


FLEET = 6  # more devices than a plot draws, so that a plot's rows are fewer than the hour's


@pytest.fixture(params=["sqlite", "postgresql"])
def fleet_platform(request, bscore_home, azurite, monkeypatch) -> Operations:
    """A trained fleet of ``FLEET`` devices with an hour to score, on SQLite or PostgreSQL."""
    from contextlib import ExitStack

    from definitions import build_defs
    from tests.conftest import postgres_database, sqlalchemy_postgres_url

    with ExitStack() as stack:
        if request.param == "postgresql":
            name = stack.enter_context(postgres_database("bscore_azpublish"))
            monkeypatch.setenv("BSCORE_SQL_URL", sqlalchemy_postgres_url(name))
        monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite.connection_string)
        settings = Settings.from_env()
        ops = Operations(settings, build_defs(settings), local_instance(settings))
        training = simulate_readings(FLEET, SENSORS, TRAIN_START, 1, anomaly_rate=0.0, seed=31)
        scoring = simulate_readings(FLEET, SENSORS, SCORE_START, 1, anomaly_rate=0.02, seed=32)
        ops.resources["events"].publish(readings_to_event_bodies(pd.concat([training, scoring])))
        ops.train(None, TRAIN_START, TRAIN_START)
        yield ops
        ops.resources["sql"].engine.dispose()


def test_azureml_jobs_publish_their_own_predictions_and_the_run_reads_none(fleet_platform, azurite, tmp_path,
                                                                             monkeypatch):
    from bscore_assets.predictions.plots import MAX_DEVICES
    from resources.sql import prediction_staging

    sql = fleet_platform.resources["sql"]
    backend = stand_in_backend(azurite, tmp_path, azurite.new_container_name(), devices_per_shard=3)
    reads = RunReads(monkeypatch)

    on_azureml(fleet_platform, backend).score(SCORE_START, SCORE_START)

    monkeypatch.undo()  # the test's own reads below are not the run's
    stored = sql.read_predictions(SCORE_START, SCORE_START + HOUR)
    assert len(stored) == FLEET * SENSORS * 720 and stored["is_anomaly"].any()
    assert sorted(stored["device"].unique()) == sorted(map(str, range(1, FLEET + 1)))
    with sql.engine.connect() as conn:  # published: nothing left staged
        assert conn.execute(sa.select(sa.func.count()).select_from(prediction_staging)).scalar_one() == 0
    # The run read no blob part and no staged row: the jobs staged, the server moved the rows.
    assert reads.parts == []
    assert [r for r in reads.sql if r[0] == "prediction_staging"] == []
    # Its only prediction reads are its plots: the worst few devices of a plotted partition,
    # a bound that does not grow with the fleet.
    plots = [r for r in reads.sql if r[0] == "predictions"]
    assert plots and all(devices is not None and len(devices) <= MAX_DEVICES for _, devices, _ in plots)
    assert reads.prediction_rows() <= SENSORS * MAX_DEVICES * 720 < len(stored)
    # Each job wrote its blob parts too (the lake's copy), named in the manifests the run committed.
    blob = fleet_platform.resources["blob"]
    for sensor in map(str, range(1, SENSORS + 1)):
        stored_part = read_prediction_partition(blob, SCORE_START, sensor)
        assert len(stored_part) == FLEET * 720


def test_a_failed_azureml_run_leaves_no_staged_rows_and_the_previous_hour(fleet_platform, azurite, tmp_path):
    from resources.sql import prediction_staging

    sql = fleet_platform.resources["sql"]
    fleet_platform.score(SCORE_START, SCORE_START)  # the hour as a local run published it
    before = sorted_predictions(sql.read_predictions(SCORE_START, SCORE_START + HOUR))
    forget_scoring_inputs(fleet_platform)
    # One job at a time: shard-0000 stages its rows, then shard-0001 fails (its database is not
    # where the cluster runs).
    backend = stand_in_backend(azurite, tmp_path, azurite.new_container_name(), devices_per_shard=3,
                               max_jobs_in_flight=1)
    jobs = STAND_INS.setdefault(backend.jobs_dir, LocalMLClient(Path(backend.jobs_dir))).jobs
    jobs.prefix = lambda job: ("BSCORE_SQL_URL=sqlite:////nonexistent/bscore.db " if job.display_name == "shard-0001"
                               else "")

    with pytest.raises(RuntimeError, match="shard-0001"):
        on_azureml(fleet_platform, backend).score(SCORE_START, SCORE_START)

    assert jobs.get(next(iter(jobs.started))).status == "Completed"  # shard-0000 had staged
    pd.testing.assert_frame_equal(sorted_predictions(sql.read_predictions(SCORE_START, SCORE_START + HOUR)), before)
    with sql.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(prediction_staging)).scalar_one() == 0

def test_azureml_training_jobs_train_shards_and_the_run_makes_their_versions_current(platform, azurite, tmp_path):
    from scoring.model_store import load_current_bundles_or_refusals

    blob = platform.resources["blob"]
    devices = [str(d) for d in range(1, DEVICES + 1)]
    before, _ = load_current_bundles_or_refusals(blob, devices)
    backend = stand_in_backend(azurite, tmp_path, azurite.new_container_name())

    [result] = on_azureml(platform, backend).train(None, TRAIN_START, TRAIN_START, refresh=False)

    jobs = STAND_INS[backend.jobs_dir].jobs
    assert sorted(job.display_name for job, _, _ in jobs.started.values()) == ["training-0000", "training-0001"]
    assert all(jobs.get(name).status == "Completed" for name in jobs.started)
    after, unreadable = load_current_bundles_or_refusals(blob, devices)
    assert unreadable == {} and sorted(after) == devices
    assert all(after[d].version != before[d].version for d in devices)  # each job stored, the run made current
    gate = result.check_metadata("device_models", "challenger_gate")
    assert gate["promoted"] == {d: after[d].version for d in devices}
    records = platform.instance.fetch_materializations(dg.AssetKey("device_models"), limit=100).records
    ours = [r.asset_materialization for r in records if r.run_id == result.run_id]
    assert sorted(m.partition for m in ours) == devices
    meta = {k: v.value for k, v in ours[0].metadata.items()}
    assert meta["azureml_promoted"] == DEVICES and sorted(r["shard"] for r in meta["azureml_jobs"]) == [
        "training-0000", "training-0001"]
