"""The Azure ML scoring image's Python environment scores every bundle bscore can store.

A virtual environment is built from the image's build context alone (``docker/requirements.txt``
with ``constraints.txt``, as the Dockerfile installs them; not the project's environment) and
``python -m scoring.entrypoint`` runs in it with ``PYTHONPATH`` holding only the staged
``scoring`` package, on a shard named over Pipes (devices, hour, sensors, the run's token) whose
windows are in SQL and whose bundles (every detector kind and one malformed bundle) are on
Azurite: the job reads both and writes its predictions itself. Pipes context and messages go
through blob storage as on Azure ML; only the process launcher is local
(``PipesSubprocessClient`` instead of an Azure ML job).

The environment is cached under ``build/scoring-image-venv-<hash of requirements and
constraints>`` so re-runs (and CI with a kept ``build/``) skip the install.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest
from azure.storage.blob import BlobServiceClient
from dagster_azure.pipes import PipesAzureBlobStorageContextInjector, PipesAzureBlobStorageMessageReader
from sklearn.covariance import EllipticEnvelope
from sklearn.ensemble import IsolationForest
from sklearn.neighbors import LocalOutlierFactor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import OneClassSVM

from resources.azureml_provision import CONSTRAINTS, DOCKER_DIR, stage_build_context
from scoring.detectors import DetectorModel
from scoring.engine import score_shard
from resources.sql import SqlStore
from scoring.azure_storage import ContainerBlobs
from scoring.model_format import ModelBundle, SensorModel
from scoring.model_store import save_bundle
from scoring.parquet import from_parquet_bytes
from scoring.prediction_layout import run_token
from scoring.shards import ShardTask

pytestmark = pytest.mark.slow  # builds the image's virtualenv with pip

ROOT = Path(__file__).resolve().parents[2]
SENSORS = ["1", "2"]
ROWS_PER_SENSOR = 240
HOUR = pd.Timestamp("2026-03-01T00:00")


def image_venv() -> Path:
    """A venv with what the image installs, built once per requirements/constraints content."""
    key = hashlib.sha256((DOCKER_DIR / "requirements.txt").read_bytes() + b"\0" + CONSTRAINTS.read_bytes())
    venv = ROOT / "build" / f"scoring-image-venv-{key.hexdigest()[:12]}"
    if (venv / ".installed").exists():
        return venv
    # Built beside its final name and renamed whole, so a crashed build is never reused.
    partial = venv.with_name(f"{venv.name}.{uuid.uuid4().hex[:6]}.partial")
    try:
        subprocess.run([sys.executable, "-m", "venv", str(partial)], check=True)
        subprocess.run([str(partial / "bin" / "python"), "-m", "pip", "install", "--quiet",
                        "-r", str(DOCKER_DIR / "requirements.txt"), "-c", str(CONSTRAINTS)],
                       check=True, env={k: v for k, v in os.environ.items() if k != "PIP_NO_CACHE_DIR"})
        (partial / ".installed").touch()
        # venvs hold their own path in scripts; only bin/python is used, which does not care.
        try:
            partial.rename(venv)
        except OSError:  # another run finished first: use its
            shutil.rmtree(partial)
    finally:
        if partial.exists() and not (venv / ".installed").exists():
            shutil.rmtree(partial, ignore_errors=True)
    return venv


def fitted(estimator, rng) -> object:
    return estimator.fit(rng.normal(30, 3, size=(300, 1)))


def fleet_bundles() -> dict[str, ModelBundle]:
    """One device per detector kind, each with a model for every sensor."""
    rng = np.random.default_rng(12)
    kinds = {
        "svm": lambda: SensorModel.from_pipeline(fitted(Pipeline([
            ("scaler", StandardScaler()), ("classifier", OneClassSVM(nu=0.01, kernel="rbf", gamma=0.1))]), rng)),
        "iforest": lambda: DetectorModel(fitted(IsolationForest(n_estimators=20, random_state=0), rng)),
        "envelope": lambda: DetectorModel(fitted(Pipeline([
            ("scaler", StandardScaler()), ("detector", EllipticEnvelope(random_state=0))]), rng)),
        "lof": lambda: DetectorModel(fitted(LocalOutlierFactor(n_neighbors=20, novelty=True), rng)),
    }
    return {device: ModelBundle(device, f"v-{device}", {s: make() for s in SENSORS}) for device, make in kinds.items()}


def shard_rows(devices: list[str]) -> pd.DataFrame:
    rng = np.random.default_rng(34)
    ts = pd.date_range("2026-03-01T00:00:05", periods=ROWS_PER_SENSOR, freq="5s")
    frames = [pd.DataFrame({"ts": ts, "device": d, "sensor": s, "value": rng.normal(30, 6, ROWS_PER_SENSOR),
                            "readings": 5})
              for d in devices for s in SENSORS]
    return pd.concat(frames, ignore_index=True)


def test_image_environment_is_only_docker_requirements(tmp_path):
    python = image_venv() / "bin" / "python"
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(stage_build_context(tmp_path / "context"))}
    probe = ("import importlib.util as u; print(*(bool(u.find_spec(m)) for m in "
             "('sklearn', 'skops', 'dagster_pipes', 'sqlalchemy', 'scoring', 'dagster', 'bscore_assets', 'resources')))")
    found = subprocess.run([str(python), "-c", probe], env=env, cwd=tmp_path, capture_output=True, text=True,
                           check=True).stdout.split()
    # What the job needs is there; the project's orchestration side is not.
    assert found == ["True"] * 5 + ["False"] * 3


def test_entrypoint_in_image_environment_scores_every_detector_and_refuses_only_the_bad_bundle(azurite, tmp_path):
    python = image_venv() / "bin" / "python"
    context_dir = stage_build_context(tmp_path / "context")
    bundles = fleet_bundles()
    devices = sorted([*bundles, "broken", "unmodelled"])
    rows = shard_rows(devices)

    # The windows in SQL, where the job reads them.
    sql_url = f"sqlite:///{tmp_path / 'bscore.db'}"
    sql = SqlStore(url=sql_url)
    sql.replace_sensor_values(rows, HOUR, HOUR + pd.Timedelta(hours=1))
    # The bundles in the blob store, where the job loads them.
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    container = azurite.new_container_name()
    service.create_container(container)
    store = ContainerBlobs(service.get_container_client(container), "store")
    for bundle in bundles.values():
        save_bundle(store, bundle)
    # A bundle whose arrays were damaged after it was written: its hash no longer matches.
    good = ModelBundle("broken", "v-broken", {s: bundles["svm"].models[s] for s in SENSORS})
    save_bundle(store, good)
    params = f"models/broken/{good.version}/params.npz"
    store.write_bytes(params, store.read_bytes(params)[:-40] + b"\0" * 40)
    task = ShardTask("shard-0000", tuple(devices), (HOUR,), tuple(SENSORS), run_token())

    reports = []

    @dg.asset
    def scoring_job(context):
        pipes = dg.PipesSubprocessClient(
            context_injector=PipesAzureBlobStorageContextInjector(container=container, client=service),
            message_reader=PipesAzureBlobStorageMessageReader(container=container, client=service, interval=0.2),
        )
        invocation = pipes.run(
            context=context, command=[str(python), "-m", "scoring.entrypoint"], cwd=str(tmp_path),
            extras={"task": task.to_json()},  # names only
            # Nothing of the project but the staged scoring package; blob access as on Azurite.
            env={"PYTHONPATH": str(context_dir), "PATH": "/usr/bin:/bin", "BSCORE_SQL_URL": sql_url,
                 "BSCORE_BLOB_URL": f"az://{container}/store",
                 "AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string})
        reports.extend(invocation.get_custom_messages())
        return dg.MaterializeResult()

    assert dg.materialize([scoring_job]).success

    [report] = [r for r in reports if isinstance(r, dict) and r.get("shard") == "shard-0000"]
    # The job's own Parquet parts, one per partition, are its predictions.
    remote = pd.concat([from_parquet_bytes(store.read_bytes(part["part"])) for part in report["partitions"]])
    local = score_shard(rows[rows["device"] != "broken"].reset_index(drop=True), bundles).predictions
    key = ["device", "sensor", "ts"]
    remote = remote.sort_values(key).reset_index(drop=True)
    local = local.sort_values(key).reset_index(drop=True)
    assert sorted(remote["device"].unique()) == sorted(bundles)  # every detector kind was scored
    assert len(remote) == len(bundles) * len(SENSORS) * ROWS_PER_SENSOR
    pd.testing.assert_frame_equal(remote[key + ["value", "is_anomaly"]], local[key + ["value", "is_anomaly"]],
                                  check_dtype=False, check_categorical=False)
    np.testing.assert_allclose(remote["score"], local["score"], rtol=0, atol=1e-9)
    assert remote["model_version"].astype(str).tolist() == local["model_version"].astype(str).tolist()

    assert list(report["devices_refused"]) == ["broken"] and "params.npz hashes to" in report["devices_refused"]["broken"]
    # A device without any bundle is missing, not refused.
    assert sorted({d for d, _, _ in report["missing_models"]}) == ["unmodelled"]
    assert report["rows_scored"] == len(remote) and report["rows"] == len(rows)
    for part in report["partitions"]:
        assert part["devices_refused"] == ["broken"] and part["devices_missing_model"] == ["unmodelled"]
        assert part["rows_scored"] == len(bundles) * ROWS_PER_SENSOR
