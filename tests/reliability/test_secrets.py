"""Secrets never appear in logs, run metadata, exceptions or what the UI is sent."""

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
from dagster._core.remote_representation.external_data import RepositorySnap
from dagster_shared.serdes import serialize_value

from tests.conftest import AZURITE_KEY

pytestmark = pytest.mark.slow  # a whole flow on Azurite and PostgreSQL

ROOT = Path(__file__).resolve().parents[2]
DB_PASSWORD = "pw-that-must-not-leak-7431"


def bscore(args, env, check=True):
    result = subprocess.run([sys.executable, "-m", "bscore_assets.cli", *args], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 or not check, result.stderr
    return result.stdout + result.stderr


def test_secrets_stay_out_of_logs_metadata_errors_and_the_ui(bscore_home, azurite, postgres_url, monkeypatch):
    secret_sql_url = postgres_url.replace("postgres@", f"postgres:{DB_PASSWORD}@")  # trust auth ignores it
    env = {
        **os.environ,
        "BSCORE_HOME": str(bscore_home),
        "BSCORE_SQL_URL": secret_sql_url,
        "BSCORE_BLOB_URL": f"az://{azurite.new_container_name()}",
        "AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string,
    }
    secrets = [AZURITE_KEY, DB_PASSWORD]
    output = bscore(["demo", "--devices", "2", "--sensors", "2", "--train-hours", "1", "--score-hours", "1"], env)
    output += bscore(["score", "--from", "2017-01-01T00", "--to", "2017-01-01T00"], env, check=False)  # an error
    unreachable = sa.make_url(secret_sql_url).set(port=9).render_as_string(hide_password=False)
    broken = {**env, "BSCORE_SQL_URL": unreachable}
    output += bscore(["train"], broken, check=False)  # database unreachable: an exception's message

    instance = dg.DagsterInstance.from_config(str(bscore_home / "dagster"))
    runs = instance.get_runs()
    assert len(runs) >= 4
    logged = "".join(serialize_value(entry) for run in runs for entry in instance.all_logs(run.run_id))
    compute_logs = "".join(p.read_text(errors="replace") for p in (bscore_home / "dagster").rglob("*")
                           if p.is_file() and p.suffix in (".out", ".err", ".complete", ".log"))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    from definitions import build_defs
    from bscore_assets.settings import Settings

    repository = build_defs(Settings.from_env()).get_repository_def()
    sent_to_ui = serialize_value(RepositorySnap.from_def(repository))
    for secret in secrets:
        assert secret not in output
        assert secret not in logged
        assert secret not in compute_logs
        assert secret not in sent_to_ui
    assert "BSCORE_SQL_URL" in sent_to_ui  # the UI shows where the URL comes from, not what it is
