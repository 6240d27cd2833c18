"""What ``bscore aml provision`` creates in the Azure ML workspace: the autoscaling compute
cluster and the scoring Environment, as Azure ML SDK entities.

The Environment is built by Azure ML from a Docker build context, so the image lands in the
workspace's container registry. The repository's ``docker/`` holds only the Dockerfile and
the pinned requirements; the build context is assembled from it, the ``scoring/`` package and
``constraints.txt`` into a folder of its own, so the one copy of the scoring code stays in
``scoring/`` and the image always carries the code of the checkout it was provisioned from.
The Environment's version is a hash of that context: provisioning unchanged code registers
nothing new, and a changed one gets a new version. Jobs name that exact version
(:func:`checkout_environment`, computed from the host's checkout), never ``@latest``, so a host
running an older checkout scores with the older code, and re-provisioning it rolls back.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCKER_DIR = ROOT / "docker"
SCORING_DIR = ROOT / "scoring"
CONSTRAINTS = ROOT / "constraints.txt"


@dataclass(frozen=True)
class ClusterSpec:
    """An AmlCompute cluster that scales between ``min_nodes`` and ``max_nodes``."""

    name: str = "bscore-cpu"
    vm_size: str = "Standard_DS3_v2"
    min_nodes: int = 0
    max_nodes: int = 4
    idle_seconds: int = 600

    def __post_init__(self):
        if not 0 <= self.min_nodes <= self.max_nodes or self.max_nodes < 1:
            raise ValueError(f"nodes must satisfy 0 <= min ({self.min_nodes}) <= max ({self.max_nodes}), max >= 1")
        if self.idle_seconds < 0:
            raise ValueError(f"idle seconds {self.idle_seconds} must not be negative")


def cluster_entity(spec: ClusterSpec):
    """The ``AmlCompute`` entity, with a system-assigned identity for the jobs' blob access.

    Parameters
    ----------
    spec : ClusterSpec
        Name, VM size, node bounds and idle time before scale-down.

    Returns
    -------
    azure.ai.ml.entities.AmlCompute
    """
    from azure.ai.ml.entities import AmlCompute, IdentityConfiguration

    return AmlCompute(
        name=spec.name,
        size=spec.vm_size,
        tier="dedicated",
        min_instances=spec.min_nodes,
        max_instances=spec.max_nodes,
        idle_time_before_scale_down=spec.idle_seconds,
        identity=IdentityConfiguration(type="system_assigned"),
    )


def stage_build_context(dest: Path) -> Path:
    """Assemble ``docker/`` + ``scoring/`` + ``constraints.txt`` into ``dest`` (replaced)."""
    dest = Path(dest)
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(DOCKER_DIR, dest)
    shutil.copytree(SCORING_DIR, dest / "scoring", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy2(CONSTRAINTS, dest / "constraints.txt")
    return dest


def context_version(path: Path) -> str:
    """A short hash of every file's path and bytes under ``path``."""
    digest = hashlib.sha256()
    for file in sorted(p for p in Path(path).rglob("*") if p.is_file()):
        digest.update(file.relative_to(path).as_posix().encode() + b"\0" + file.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def checkout_environment(name: str) -> str:
    """``<name>:<version>``: the scoring Environment that ``bscore aml provision`` registers from
    this checkout (the same build context, so the same hash)."""
    with tempfile.TemporaryDirectory(prefix="bscore-context-") as folder:
        return f"{name}:{context_version(stage_build_context(Path(folder) / 'context'))}"


def environment_entity(name: str, build_dir: Path):
    """The scoring ``Environment``, built by Azure ML from ``build_dir``.

    Parameters
    ----------
    name : str
        Environment name; jobs use ``<name>:<version>`` (:func:`checkout_environment`).
    build_dir : Path
        A build context made by :func:`stage_build_context`.

    Returns
    -------
    azure.ai.ml.entities.Environment
    """
    from azure.ai.ml.entities import BuildContext, Environment

    return Environment(
        name=name,
        version=context_version(build_dir),
        description="bscore scoring job: python -m scoring.entrypoint (numpy, pandas, pyarrow, "
                    "scikit-learn, skops, azure-storage-blob, azure-identity, dagster-pipes)",
        build=BuildContext(path=str(build_dir), dockerfile_path="Dockerfile"),
    )


def dump_entities(entities) -> str:
    """The entities as the SDK serializes them, one YAML document each."""
    documents = []
    for entity in entities:
        buffer = io.StringIO()
        entity.dump(buffer)
        documents.append(f"# {type(entity).__name__}\n{buffer.getvalue()}")
    return "---\n".join(documents)


def provision(ml_client, cluster, environment) -> tuple:
    """Create or update the cluster (waiting for it) and register the environment.

    Azure ML builds the environment's image into the workspace's registry the first time a
    job uses that version.
    """
    compute = ml_client.compute.begin_create_or_update(cluster).result()
    registered = ml_client.environments.create_or_update(environment)
    return compute, registered
