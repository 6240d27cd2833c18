"""Shared fixtures: a temporary BSCORE_HOME, and the real services tests talk to.

Azurite (Azure Blob Storage) is started from the project's npm install on a free loopback
port for the session. PostgreSQL is the server at ``BSCORE_TEST_PG`` (default
127.0.0.1:5432, trust auth) when one answers there; otherwise the session starts its own from
Debian's ``postgresql`` package (``initdb`` in a temporary folder, run as the package's
``postgres`` user, on a free loopback port) and stops it at the end. Each test session gets a
database of its own that is dropped afterwards.
"""

from __future__ import annotations

import atexit
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT.parent / "shared" / "reference"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
CONFIGURED_PG = os.environ.get("BSCORE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


# A test that asks for one of these runs Dagster jobs on a whole platform: marked slow.
PLATFORM_FIXTURES = {"platform", "trained", "trained_kind", "scored", "platform_states", "pg_platform", "fleet_platform"}


def pytest_collection_modifyitems(items):
    for item in items:
        if PLATFORM_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
    # Slow tests first, each file's in its own order: spread over workers (make test's
    # --dist worksteal), the run then ends on tests of a second or less, not on one worker
    # finishing a minute-long test while the other idles.
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


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


def _pg_answers(url: str) -> bool:
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=3):
            return True
    except psycopg.OperationalError:
        return False


def start_postgres() -> tuple[str, callable]:
    """A PostgreSQL server of the session's own; returns its admin URL and how to stop it."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if not found:
        raise RuntimeError("initdb not found: install Debian's postgresql package (make test does)")
    bindir = Path(found[-1]).parent
    datadir = Path(tempfile.mkdtemp(prefix="bscore-pg-"))
    run_as = []
    if os.geteuid() == 0:  # initdb and postgres refuse to run as root
        user = "postgres"
        pwd.getpwnam(user)  # created by the package
        shutil.chown(datadir, user)
        run_as = ["runuser", "-u", user, "--"]
    port = free_port()
    subprocess.run([*run_as, str(bindir / "initdb"), "-D", str(datadir / "data"), "-U", "postgres",
                    "--auth=trust", "-E", "UTF8", "--no-sync"], check=True, capture_output=True)
    options = f"-p {port} -k {datadir} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run([*run_as, str(bindir / "pg_ctl"), "-D", str(datadir / "data"), "-o", options,
                    "-l", str(datadir / "log"), "-w", "start"], check=True, capture_output=True)

    def stop():
        subprocess.run([*run_as, str(bindir / "pg_ctl"), "-D", str(datadir / "data"), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(datadir, ignore_errors=True)

    return f"postgresql://postgres@127.0.0.1:{port}/postgres", stop


def _postgres_admin_url() -> str:
    """The configured server when it answers; otherwise one started for this session."""
    if _pg_answers(CONFIGURED_PG):
        return CONFIGURED_PG
    url, stop = start_postgres()
    atexit.register(stop)
    return url


_pg_url: str | None = None


def pg_admin_url() -> str:
    """The admin URL of the session's PostgreSQL (started on first use when none answers)."""
    global _pg_url
    if _pg_url is None:
        _pg_url = _postgres_admin_url()
    return _pg_url


def postgres_url_for(database: str, driver: str = "postgresql") -> str:
    """A URL of ``database`` on the session's PostgreSQL server."""
    import sqlalchemy as sa

    return sa.make_url(pg_admin_url()).set(drivername=driver, database=database).render_as_string(hide_password=False)


@contextmanager
def postgres_database(prefix: str = "bscore_test"):
    """A database of its own on the session's PostgreSQL server, dropped afterwards; yields its name."""
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_admin_url(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with psycopg.connect(pg_admin_url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def sqlalchemy_postgres_url(database: str) -> str:
    return postgres_url_for(database, "postgresql+psycopg")


@pytest.fixture(scope="session")
def postgres_url():
    """A database of its own on the session's PostgreSQL server."""
    with postgres_database() as name:
        yield sqlalchemy_postgres_url(name)


@pytest.fixture(scope="session")
def platform_states(tmp_path_factory):
    """Platform homes brought to named states once per session, for every directory's tests
    (``PlatformStates`` in tests/assets/conftest.py)."""
    from tests.assets.conftest import PlatformStates

    return PlatformStates(tmp_path_factory.mktemp("platform-states"))


@pytest.fixture
def reference_dir() -> Path:
    """The reference implementation's sample data and legacy models; skip when absent."""
    if not (REFERENCE / "sensor_data.csv").exists():
        pytest.skip(f"reference data not found at {REFERENCE}")
    return REFERENCE
