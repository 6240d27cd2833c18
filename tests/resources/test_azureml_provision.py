"""``bscore aml provision --dry-run``: the cluster and Environment entities it would create,
and the scoring image's build context."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from bscore_assets.cli import main
from resources.azureml_provision import CONSTRAINTS, context_version

ROOT = Path(__file__).resolve().parents[2]


def dry_run(monkeypatch, *args, **env) -> dict:
    for name in ("AZUREML_SUBSCRIPTION_ID", "AZUREML_RESOURCE_GROUP", "AZUREML_WORKSPACE"):
        monkeypatch.delenv(name, raising=False)  # a dry run needs no workspace
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(main, ["aml", "provision", "--dry-run", *args])
    assert result.exit_code == 0, result.output
    documents = list(yaml.safe_load_all(result.stdout))
    return {doc["type"] if "type" in doc else "environment": doc for doc in documents}


def test_azureml_dry_run_prints_autoscaling_cluster(bscore_home, monkeypatch):
    entities = dry_run(monkeypatch, "--idle-seconds", "300", "--vm-size", "Standard_F4s_v2",
                       AZUREML_MAX_NODES="7", AZUREML_CLUSTER="scoring-cpu")
    cluster = entities["amlcompute"]
    assert cluster["name"] == "scoring-cpu"
    assert cluster["min_instances"] == 0
    assert cluster["max_instances"] == 7
    assert cluster["idle_time_before_scale_down"] == 300
    assert cluster["size"] == "Standard_F4s_v2"
    assert cluster["identity"]["type"] == "system_assigned"


def test_azureml_dry_run_prints_environment_built_from_docker_context(bscore_home, monkeypatch):
    environment = dry_run(monkeypatch, "--environment", "bscore-scoring")["environment"]
    context = Path(environment["build"]["path"])
    assert context == bscore_home.resolve() / "azureml" / "scoring-image"
    assert environment["build"]["dockerfile_path"] == "Dockerfile"
    assert environment["name"] == "bscore-scoring"
    assert environment["version"] == context_version(context)
    # Self-contained: every COPY source of the Dockerfile is in the context, with the code of this checkout.
    dockerfile = (context / "Dockerfile").read_text()
    sources = [s for line in re.findall(r"^COPY (.+)$", dockerfile, re.M) for s in line.split()[:-1]]
    assert sources == ["requirements.txt", "constraints.txt", "scoring/"]
    assert all((context / source).exists() for source in sources)
    assert (context / "scoring" / "entrypoint.py").read_bytes() == (ROOT / "scoring" / "entrypoint.py").read_bytes()
    assert not list(context.rglob("__pycache__"))


def test_jobs_run_the_environment_version_provisioned_from_this_checkout(bscore_home, monkeypatch):
    from resources.azureml import AzureMLComputeBackend

    provisioned = dry_run(monkeypatch, "--environment", "bscore-scoring")["environment"]
    backend = AzureMLComputeBackend.from_env({
        "AZUREML_SUBSCRIPTION_ID": "sub", "AZUREML_RESOURCE_GROUP": "rg", "AZUREML_WORKSPACE": "ws",
        "AZUREML_STORAGE_ACCOUNT": "jobs"})
    # The exact version `bscore aml provision` registers from this checkout, never @latest.
    assert backend.environment == f"bscore-scoring:{provisioned['version']}"
    # A changed scoring package is another version: an older checkout keeps scoring with its own code.
    from resources import azureml_provision

    changed = bscore_home / "scoring-copy"
    shutil.copytree(ROOT / "scoring", changed, ignore=shutil.ignore_patterns("__pycache__"))
    (changed / "engine.py").write_text((changed / "engine.py").read_text() + "\n# changed\n")
    monkeypatch.setattr(azureml_provision, "SCORING_DIR", changed)
    assert azureml_provision.checkout_environment("bscore-scoring") != backend.environment


def test_azureml_dry_run_rejects_min_above_max(bscore_home):
    result = CliRunner().invoke(main, ["aml", "provision", "--dry-run", "--min-nodes", "3", "--max-nodes", "2"])
    assert result.exit_code == 2
    assert "min (3) <= max (2)" in result.output


def test_azureml_image_requirements_are_pinned_as_the_project():
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)$", CONSTRAINTS.read_text(), re.M))
    required = re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)$", (ROOT / "docker" / "requirements.txt").read_text(), re.M)
    assert {name for name, _ in required} == {
        "numpy", "numba", "pandas", "pyarrow", "scikit-learn", "skops", "azure-storage-blob", "azure-identity",
        "dagster-pipes",
        "SQLAlchemy", "pyodbc",  # the job reads its windows itself (psycopg[binary] too)
        "adbc-driver-manager", "adbc-driver-postgresql", "adbc-driver-sqlite"}  # through scoring/sql_read.py
    assert all(pins[name] == version for name, version in required)


@pytest.mark.slow  # imports the entrypoint in a subprocess
def test_azureml_entrypoint_imports_only_what_the_image_installs():
    code = (
        "import sys, scoring.entrypoint as e\n"
        "import dagster_pipes, azure.storage.blob, azure.identity\n"
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    loaded = set(subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True,
                                text=True).stdout.split())
    assert {"scoring", "numpy", "pandas", "pyarrow", "dagster_pipes"} <= loaded
    assert not loaded & {"dagster", "sqlalchemy", "sklearn", "skops", "bscore_assets", "resources"}


@pytest.mark.parametrize("image", ["docker/Dockerfile", "deploy/azure/host/Dockerfile"])
def test_images_install_odbc_driver_18_as_microsoft_documents_for_debian_12(image):
    """Each Dockerfile's driver step (the scoring job's and the Dagster host's): Microsoft's Debian
    repository for the base image's release (python:*-bookworm is Debian 12), its configuration
    package, then msodbcsql18 with the EULA accepted, in that order, before pyodbc is installed."""
    dockerfile = (ROOT / image).read_text()
    assert re.search(r"^FROM python:3\.11-slim-bookworm$", dockerfile, re.M)
    steps = [
        "curl -sSL -O https://packages.microsoft.com/config/debian/12/packages-microsoft-prod.deb",
        "dpkg -i packages-microsoft-prod.deb",
        "rm packages-microsoft-prod.deb",
        "apt-get update",
        "ACCEPT_EULA=Y apt-get install -y msodbcsql18",
    ]
    positions = [dockerfile.find(step, dockerfile.find(steps[0])) for step in steps]
    assert -1 not in positions and positions == sorted(positions)
    assert dockerfile.find("msodbcsql18") < dockerfile.find("pip install")
