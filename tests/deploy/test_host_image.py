"""The Dagster host image's Python side, built as deploy/azure/host/Dockerfile builds it.

No container daemon or base image can be pulled here, so the image's files are staged as its
COPY lines say (the checkout's code, docker/, the Azure dagster.yaml as the instance) and its
Python requirements (the project's, with ``constraints.txt``, as ``pip install -c constraints.txt
-e .`` resolves them) are installed into a clean virtual environment, cached under
``build/host-image-venv-<hash of pyproject.toml and constraints.txt>``. In it: the webserver,
daemon, PostgreSQL storage and blob compute logs import; pyodbc loads unixODBC's driver manager
(Microsoft's driver itself comes from the Dockerfile's apt step, checked as text); the instance
file is valid Dagster configuration; bscore's definitions load with the environment
deploy/azure/modules/host.bicep gives the host; and the host names the scoring Environment
version `bscore aml provision` registers from the same checkout.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import uuid
from pathlib import Path

import pytest

from resources.azureml_provision import checkout_environment
from tests.deploy.test_bicep import host_settings

pytestmark = pytest.mark.slow  # builds the image's virtualenv with pip (minutes the first time)

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "azure" / "host" / "Dockerfile"
# What host.bicep computes from other resources, as a deployment would fill it in.
DEPLOYED = {
    "AZURE_CLIENT_ID": "00000000-0000-0000-0000-000000000001",
    "BSCORE_SQL_URL": "mssql+pyodbc://@bscore-sql-x.database.windows.net:1433/bscore"
                      "?driver=ODBC+Driver+18+for+SQL+Server&Encrypt=yes",
    "BSCORE_BLOB_URL": "https://bscorestorex.blob.core.windows.net/bscore",
    "EVENTHUB_FULLY_QUALIFIED_NAMESPACE": "bscore-events-x.servicebus.windows.net",
    "EVENTHUB_NAME": "readings",
    "EVENTHUB_CONSUMER_GROUP": "bscore",
    "EVENTHUB_CHECKPOINT_CONTAINER": "eventhub-checkpoints",
    "AZURE_STORAGE_ACCOUNT_URL": "https://bscorestorex.blob.core.windows.net",
    "AZUREML_SUBSCRIPTION_ID": "00000000-0000-0000-0000-000000000002",
    "AZUREML_RESOURCE_GROUP": "bscore",
    "AZUREML_WORKSPACE": "bscore-ml",
    "AZUREML_CLUSTER": "bscore-cpu",
    "AZUREML_STORAGE_ACCOUNT_URL": "https://bscorestorex.blob.core.windows.net",
    "AZUREML_CONTAINER": "bscore-pipes",
    "BSCORE_AGGREGATION": "asa",
    "BSCORE_ALLOWED_LATENESS_MINUTES": "5",
    "ASA_SUBSCRIPTION_ID": "00000000-0000-0000-0000-000000000002",
    "ASA_RESOURCE_GROUP": "bscore",
    "ASA_LOCATION": "westeurope",
    "ASA_JOB_NAME": "bscore-aggregation",
    "DAGSTER_PG_HOST": "bscore-dagster-x.postgres.database.azure.com",
    "DAGSTER_PG_DB": "dagster",
    "DAGSTER_PG_USER": "bscore-host",
    "DAGSTER_COMPUTE_LOGS_ACCOUNT": "bscorestorex",
    "DAGSTER_COMPUTE_LOGS_CONTAINER": "dagster-logs",
}


def host_environment(image: Path) -> dict[str, str]:
    """host.bicep's variables: its literals as written, the rest as a deployment fills them in."""
    env = {}
    for name, expression in host_settings().items():
        literal = re.fullmatch(r"'([^'$]*)'", expression)
        env[name] = literal.group(1) if literal else DEPLOYED[name]
    env["DAGSTER_HOME"] = str(image / env["DAGSTER_HOME"].lstrip("/"))
    env["BSCORE_HOME"] = str(image / env["BSCORE_HOME"].lstrip("/"))
    return env


def stage_image(dest: Path) -> tuple[Path, Path]:
    """The image's files as its COPY lines place them under ``dest``; returns (workdir, dagster home)."""
    text = DOCKERFILE.read_text()
    [workdir] = re.findall(r"^WORKDIR (\S+)$", text, re.M)
    workdir = dest / workdir.lstrip("/")
    workdir.mkdir(parents=True)
    for line in re.findall(r"^COPY (.+)$", text, re.M):
        *sources, target = line.split()
        target_dir = dest / target.lstrip("/") if target.startswith("/") else workdir / target
        for source in sources:
            path = ROOT / source
            if path.is_dir():
                shutil.copytree(path, target_dir, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            elif target.endswith("/"):  # into a folder
                target_dir.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target_dir / path.name)
            else:  # to a file name
                target_dir.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target_dir)
    [home] = re.findall(r"DAGSTER_HOME=(\S+)", text)
    return workdir, dest / home.lstrip("/")


def host_requirements() -> list[str]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]


def host_venv() -> Path:
    """A venv with the image's Python requirements, built once per pyproject/constraints content."""
    key = hashlib.sha256(json.dumps(host_requirements()).encode() + b"\0" + (ROOT / "constraints.txt").read_bytes())
    venv = ROOT / "build" / f"host-image-venv-{key.hexdigest()[:12]}"
    if (venv / ".installed").exists():
        return venv
    # Built beside its final name and renamed whole, so a crashed build is never reused.
    partial = venv.with_name(f"{venv.name}.{uuid.uuid4().hex[:6]}.partial")
    try:
        subprocess.run([sys.executable, "-m", "venv", str(partial)], check=True)
        subprocess.run([str(partial / "bin" / "python"), "-m", "pip", "install", "--quiet",
                        "-c", str(ROOT / "constraints.txt"), *host_requirements()],
                       check=True, env={k: v for k, v in os.environ.items() if k != "PIP_NO_CACHE_DIR"})
        (partial / ".installed").touch()
        try:
            partial.rename(venv)
        except OSError:  # another run finished first: use its
            shutil.rmtree(partial)
    finally:
        if partial.exists() and not (venv / ".installed").exists():
            shutil.rmtree(partial, ignore_errors=True)
    return venv


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    root = tmp_path_factory.mktemp("host-image")
    workdir, home = stage_image(root)
    return {"root": root, "workdir": workdir, "home": home, "python": host_venv() / "bin" / "python"}


def run_in_image(image, code: str, env: dict[str, str] | None = None) -> str:
    base = {"PATH": f"{image['python'].parent}:/usr/bin:/bin", "PYTHONPATH": str(image["workdir"])}
    return subprocess.run([str(image["python"]), "-c", code], env={**base, **(env or {})}, cwd=image["workdir"],
                          capture_output=True, text=True, check=True).stdout


def test_host_image_has_webserver_daemon_postgres_storage_and_blob_logs(image):
    out = run_in_image(image, (
        "import dagster_webserver, dagster_postgres, psycopg2, pyodbc\n"
        "from dagster_azure.blob.compute_log_manager import AzureBlobComputeLogManager\n"
        "from dagster_postgres.auth import AzureWifTokenProvider\n"
        "import dagster, bscore_assets, resources, scoring\n"
        "print(dagster.__version__, pyodbc.version, pyodbc.__file__, scoring.__file__)"))
    dagster_version, pyodbc_version, pyodbc_module, scoring_module = out.split()
    assert dagster_version == "1.13.27" and pyodbc_version == "5.5.0"
    assert Path(scoring_module).is_relative_to(image["workdir"])  # the image's code, not the checkout's
    linked = subprocess.run(["ldd", pyodbc_module], capture_output=True, text=True, check=True).stdout
    [libodbc] = [line for line in linked.splitlines() if "libodbc.so.2" in line]
    assert "not found" not in libodbc  # unixODBC's driver manager, through which msodbcsql18 loads
    for command in ("dagster-webserver", "dagster-daemon"):
        assert (image["python"].parent / command).exists(), command


def test_host_image_instance_is_the_azure_dagster_yaml_and_valid(image):
    assert (image["home"] / "dagster.yaml").read_text() == (ROOT / "deploy" / "azure" / "dagster.yaml").read_text()
    out = run_in_image(image, (
        "import json, sys\n"
        "from dagster._core.instance.config import dagster_instance_config\n"
        "config, _ = dagster_instance_config(sys.argv[-1])\n"
        "print(json.dumps(sorted(config)))\n").replace("sys.argv[-1]", repr(str(image["home"]))),
        env=host_environment(image["root"]))
    assert {"storage", "compute_logs", "run_launcher", "concurrency", "run_monitoring"} <= set(json.loads(out))


def test_host_image_loads_bscores_azure_definitions_with_the_templates_environment(image, tmp_path):
    env = host_environment(image["root"])
    env["DAGSTER_HOME"] = str(tmp_path)  # a bare instance: no PostgreSQL to reach here
    out = run_in_image(image, (
        "from bscore_assets.definitions import build_defs\n"
        "from bscore_assets.settings import Settings\n"
        "defs = build_defs(Settings.from_env())\n"
        "print(*sorted(f'{k}={type(v).__name__}' for k, v in defs.resources.items()))\n"
        "print(*sorted(s.name for s in defs.sensors))"), env=env)
    resources, sensors = out.splitlines()
    assert {"compute=AzureMLComputeBackend", "events=EventHubSource", "blob=AzureBlobStore"} <= set(resources.split())
    assert {"azureml_orphan_jobs", "asa_aggregation_sensor"} <= set(sensors.split())


def test_host_image_names_the_scoring_environment_its_checkout_provisions(image):
    out = run_in_image(image, "from resources.azureml_provision import checkout_environment as c; "
                              "print(c('bscore-scoring'))")
    assert out.strip() == checkout_environment("bscore-scoring")
