"""Configuration and shared state that users get wrong or race on (issue 11, cases 14, 15, 16):
clear errors naming the variable, secrets never echoed, schema creation safe under
concurrency, a held table lock that times out."""

import datetime
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from bscore_assets.settings import Settings
from resources.sql import SqlStore, TableLockTimeout
from tests.conftest import postgres_database, sqlalchemy_postgres_url

ROOT = Path(__file__).resolve().parents[2]
SECRET_TAIL = "tail-of-the-password-5521"


def bscore(args, env):
    return subprocess.run([sys.executable, "-m", "bscore_assets.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("name, value, expected", [
    ("BSCORE_START", "2026-01-01T00:00+02:00", "has a time zone"),
    ("BSCORE_START", "", "is empty"),
    ("BSCORE_START", "soon", "UTC hour in ISO-8601"),
    ("BSCORE_ALLOWED_LATENESS_MINUTES", "5m", "whole number of minutes"),
    ("BSCORE_SCORING_DEADLINE_MINUTES", "75", "0..59"),
    ("BSCORE_ALLOWED_LATENESS_MINUTES", "60", "0..59"),
    ("BSCORE_TRAINING_HOURS", "1.5", "whole number of hours"),
    ("BSCORE_RESCORING_HOURS", "-1", "0 or more"),
    ("BSCORE_SILENT_AFTER_HOURS", "two", "whole number of hours"),
    ("BSCORE_RETRAINING_CRON", "daily", "cron expression"),
    ("BSCORE_DEVICE_VOTE_MIN_SENSORS", "0", "whole number of sensors (1 or more)"),
    ("BSCORE_DEVICE_VOTE_MIN_SENSORS", "any", "whole number of sensors"),
    ("BSCORE_BLOB_URL", "abfss://data@account.dfs.core.windows.net/x", "'abfss://' is not supported"),
    ("BSCORE_EVENTS", "kafka", "must be one of local, eventhub"),
    ("BSCORE_SQL_URL", "postgres ql://x", "not a database URL"),
])
def test_a_bad_variable_is_refused_naming_it_and_the_form_expected(name, value, expected, tmp_path):
    with pytest.raises(ValueError, match=f"^{name}") as raised:
        Settings.from_env({"BSCORE_HOME": str(tmp_path), name: value})
    assert expected in str(raised.value)


@pytest.mark.slow  # CLI subprocesses
def test_the_cli_reports_bad_variables_without_a_traceback_or_a_stray_folder(bscore_home, tmp_path):
    env = {**os.environ, "BSCORE_HOME": str(bscore_home)}
    for name, value in [("BSCORE_START", "2026-01-01T00:00Z"), ("BSCORE_ALLOWED_LATENESS_MINUTES", "5m"),
                        ("BSCORE_BLOB_URL", "abfss://data@account.dfs.core.windows.net/x")]:
        result = bscore(["score", "--from", "2026-01-01T00", "--to", "2026-01-01T00"], {**env, name: value})
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith(f"bscore: {name}") and "Traceback" not in result.stderr
    assert not (ROOT / "abfss:").exists()  # before, the URL silently became a local folder


@pytest.mark.slow  # CLI subprocesses
def test_a_password_with_an_unencoded_at_is_refused_and_never_printed(bscore_home, tmp_path):
    url = f"postgresql+psycopg://postgres:pa@{SECRET_TAIL}@127.0.0.1:5432/postgres"
    env = {**os.environ, "BSCORE_HOME": str(bscore_home), "BSCORE_SQL_URL": url}
    readings = tmp_path / "r.csv"
    readings.write_text("ts,device,sensor,value\n2026-03-01T00:00:01,1,1,1\n")
    for args in (["score", "--from", "2026-03-01T00", "--to", "2026-03-01T00"], ["ingest", str(readings)],
                 ["predictions", "export", "--out", str(tmp_path / "out")]):
        result = bscore(args, env)
        assert result.returncode == 2
        assert "URL-encode" in result.stderr and "BSCORE_SQL_URL" in result.stderr
        assert SECRET_TAIL not in result.stdout + result.stderr
        assert "Traceback" not in result.stderr
    assert SECRET_TAIL not in SqlStore(url=url).describe()
    with pytest.raises(ValueError) as raised:
        SqlStore(url=url).engine
    assert SECRET_TAIL not in str(raised.value)
    encoded = SqlStore(url=url.replace("pa@", "pa%40"))
    assert "***" in encoded.describe() and SECRET_TAIL not in encoded.describe()


CREATE_AT = """
import sys, time
from resources.sql import SqlStore
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
SqlStore(url=sys.argv[1]).engine
print("ok")
"""


def _create_at_once(url: str, processes: int = 6) -> list[subprocess.CompletedProcess]:
    start = time.time() + 3  # every process has imported by then: their CREATEs meet
    running = [subprocess.Popen([sys.executable, "-c", CREATE_AT, url, str(start)], cwd=ROOT, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)})
               for _ in range(processes)]
    return [(p.wait(timeout=120), p.stdout.read(), p.stderr.read()) for p in running]


@pytest.mark.slow  # processes started at once
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_schema_creation_is_safe_when_processes_start_at_once(backend, tmp_path):
    # Case 14: before, concurrent first commands failed with UNIQUE constraint / already exists.
    for attempt in range(3):
        if backend == "sqlite":
            results = _create_at_once(f"sqlite:///{tmp_path / f'fresh{attempt}.db'}")
        else:
            with postgres_database("bscore_race") as name:
                results = _create_at_once(sqlalchemy_postgres_url(name))
        for code, out, err in results:
            assert code == 0 and out.strip() == "ok", err[-2000:]


@pytest.mark.slow  # CLI subprocesses
def test_commands_on_a_fresh_home_at_once_all_work(bscore_home, tmp_path):
    # Case 14: before, 6 first commands at once failed ~1 in 3 tries on Dagster's alembic_version.
    env = {**os.environ, "BSCORE_HOME": str(bscore_home)}
    running = [subprocess.Popen([sys.executable, "-m", "bscore_assets.cli", "predictions", "export", "--out",
                                 str(tmp_path / "out")], cwd=ROOT, env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(6)]
    for process in running:
        code, err = process.wait(timeout=300), process.stderr.read()
        assert code == 2 and "no predictions to export" in err, err[-2000:]


def test_a_held_table_lock_fails_the_replace_clearly_after_the_timeout(postgres_url):
    # Case 16: before, a held advisory lock blocked `bscore score` forever.
    store = SqlStore(url=postgres_url, lock_timeout_seconds=1)
    h0 = datetime.datetime(2026, 1, 1)
    empty = pd.DataFrame(columns=["ts", "device", "sensor", "value", "readings"])
    with store.engine.connect() as holder, holder.begin():
        holder.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext('bscore.sensor_values'))"))
        began = time.monotonic()
        with pytest.raises(TableLockTimeout, match="table sensor_values is locked .* retry"):
            store.replace_sensor_values(empty, h0, h0 + datetime.timedelta(hours=1))
        assert time.monotonic() - began < 10
    store.replace_sensor_values(empty, h0, h0 + datetime.timedelta(hours=1))  # free again: goes through


def test_the_device_vote_reads_its_variable_into_the_pipeline_settings(tmp_path):
    from bscore_assets.definitions import build_resources

    assert Settings.from_env({"BSCORE_HOME": str(tmp_path)}).device_vote_min_sensors == 1
    settings = Settings.from_env({"BSCORE_HOME": str(tmp_path), "BSCORE_DEVICE_VOTE_MIN_SENSORS": "2"})
    assert build_resources(settings)["pipeline"].device_vote_min_sensors == 2
