"""Shared fixtures: a temporary BSCORE_HOME, and the real services tests talk to.

Azurite (Azure Blob Storage) is started from the project's npm install on a free loopback
port for the session; PostgreSQL is the server on 127.0.0.1:5432, where each test session
gets a database of its own that is dropped afterwards.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT.parent / "shared" / "reference"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
PG_ADMIN_URL = os.environ.get("BSCORE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 30.0, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"service on port {port} exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


@pytest.fixture
def bscore_home(tmp_path, monkeypatch) -> Path:
    """A fresh BSCORE_HOME with every BSCORE_* variable at its local default."""
    for name in list(os.environ):
        if name.startswith("BSCORE_"):
            monkeypatch.delenv(name)
    home = tmp_path / "bscore"
    monkeypatch.setenv("BSCORE_HOME", str(home))
    return home


class Azurite:
    """A running Azurite blob service."""

    def __init__(self, port: int, process: subprocess.Popen):
        self.port, self.process = port, process
        self.account_url = f"http://127.0.0.1:{port}/devstoreaccount1"
        self.connection_string = (
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
            f"AccountKey={AZURITE_KEY};BlobEndpoint={self.account_url};"
        )

    def new_container_name(self) -> str:
        return f"t{uuid.uuid4().hex[:20]}"


def start_azurite(workdir: Path, port: int | None = None) -> Azurite:
    binary = ROOT / "node_modules" / ".bin" / "azurite-blob"
    if not binary.exists():
        raise RuntimeError(f"{binary} is missing: run `make test` (it runs npm ci)")
    port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [str(binary), "--blobHost", "127.0.0.1", "--blobPort", str(port), "--location", str(workdir),
         "--silent", "--skipApiVersionCheck", "--loose"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    wait_for_port(port, process=process)
    return Azurite(port, process)


def stop_azurite(azurite: Azurite) -> None:
    azurite.process.terminate()
    try:
        azurite.process.wait(timeout=2)
    except subprocess.TimeoutExpired:  # Azurite ignores SIGTERM once a client has connected
        azurite.process.kill()
        azurite.process.wait()


@pytest.fixture(scope="session")
def azurite(tmp_path_factory):
    """Azurite on a free loopback port for the whole session."""
    service = start_azurite(tmp_path_factory.mktemp("azurite"))
    yield service
    stop_azurite(service)


@contextmanager
def postgres_database(prefix: str = "bscore_test"):
    """A database of its own on the local PostgreSQL server, dropped afterwards; yields its name."""
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def sqlalchemy_postgres_url(database: str) -> str:
    return f"postgresql+psycopg://postgres@127.0.0.1:5432/{database}"


@pytest.fixture(scope="session")
def postgres_url():
    """A database of its own on the local PostgreSQL server for the session."""
    with postgres_database() as name:
        yield sqlalchemy_postgres_url(name)


@pytest.fixture
def reference_dir() -> Path:
    """The reference implementation's sample data and legacy models; skip when absent."""
    if not (REFERENCE / "sensor_data.csv").exists():
        pytest.skip(f"reference data not found at {REFERENCE}")
    return REFERENCE
