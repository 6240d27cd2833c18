"""Entra tokens instead of passwords (``scoring.entra_sql``): what the database drivers receive.

No Entra tenant is reachable here, so the credential is a stand-in that hands out numbered
tokens with an expiry; everything after it is real: SQLAlchemy's engine and its ``do_connect``
event, the pyodbc dialect's connection string (recorded just before ``pyodbc.connect``, as no
SQL Server answers here), and PostgreSQL connections (the local server trusts every
password, so the token is read back from psycopg's connection and ADBC's URI).
"""

from __future__ import annotations

import re
import struct

import pandas as pd
import pytest
import sqlalchemy as sa
from azure.core.credentials import AccessToken

import scoring.entra_sql as entra_sql
from bscore_assets.settings import Settings
from resources.sql import SqlStore
from scoring.entra_sql import (
    AZURE_POSTGRES_SCOPE,
    AZURE_SQL_SCOPE,
    SQL_COPT_SS_ACCESS_TOKEN,
    EntraTokens,
    check_entra_url,
    create_sql_engine,
)
from scoring.shard_sql import ShardSql

AZURE_SQL_URL = ("mssql+pyodbc://@bscore.database.windows.net:1433/bscore"
                 "?driver=ODBC+Driver+18+for+SQL+Server&Encrypt=yes")


class StandInCredential:
    """``DefaultAzureCredential.get_token`` with numbered tokens living ``lifetime`` seconds."""

    def __init__(self, clock, lifetime: float = 3600):
        self.clock, self.lifetime, self.scopes = clock, lifetime, []

    def get_token(self, *scopes, **_):
        self.scopes.append(scopes)
        return AccessToken(f"eyJ.token-{len(self.scopes)}", int(self.clock() + self.lifetime))


class Clock:
    def __init__(self, now: float = 1_800_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


class ReachedTheDriver(Exception):
    """Raised with what SQLAlchemy was about to hand the DB-API's ``connect``."""

    def __init__(self, cargs, cparams):
        super().__init__("recorded")
        self.cargs, self.cparams = list(cargs), dict(cparams)


def driver_arguments(engine: sa.Engine) -> ReachedTheDriver:
    """The positional and keyword arguments the driver's ``connect`` would receive."""
    @sa.event.listens_for(engine, "do_connect")
    def record(dialect, conn_rec, cargs, cparams):  # runs after bscore's listener
        raise ReachedTheDriver(cargs, cparams)

    with pytest.raises(ReachedTheDriver) as reached:
        engine.connect()
    return reached.value


def unpack_token_struct(value: bytes) -> str:
    (length,) = struct.unpack_from("<I", value)
    assert len(value) == 4 + length
    return value[4:].decode("utf-16-le")


def test_azure_sql_connection_gets_the_token_as_odbc_access_token_attribute():
    credential = StandInCredential(Clock())
    engine = create_sql_engine(AZURE_SQL_URL, "entra", credential=credential)

    reached = driver_arguments(engine)

    [connection_string] = reached.cargs
    # SQLAlchemy's Windows sign-in for a user-less URL is gone; the rest of the URL is kept.
    assert "Trusted_Connection" not in connection_string and "UID" not in connection_string
    assert connection_string == ("DRIVER={ODBC Driver 18 for SQL Server};Server=bscore.database.windows.net,1433;"
                                 "Database=bscore;Encrypt=yes")
    assert unpack_token_struct(reached.cparams["attrs_before"][SQL_COPT_SS_ACCESS_TOKEN]) == "eyJ.token-1"
    assert credential.scopes == [(AZURE_SQL_SCOPE,)]


def test_password_mode_leaves_the_connection_arguments_alone():
    engine = create_sql_engine(AZURE_SQL_URL.replace("//@", "//bscore:pw@"), "password")
    reached = driver_arguments(engine)
    assert "attrs_before" not in reached.cparams and "PWD=pw" in reached.cargs[0]


def test_postgresql_connection_signs_in_with_the_token_as_password(postgres_url):
    credential = StandInCredential(Clock())
    url = sa.make_url(postgres_url).set(username="bscore-host-identity")  # the Entra principal's name
    engine = create_sql_engine(url.render_as_string(hide_password=False), "entra", credential=credential)

    reached = driver_arguments(engine)
    assert reached.cparams["password"] == "eyJ.token-1" and reached.cparams["user"] == "bscore-host-identity"
    assert credential.scopes == [(AZURE_POSTGRES_SCOPE,)]


def test_token_is_reused_until_five_minutes_before_expiry():
    clock = Clock()
    credential = StandInCredential(clock, lifetime=3600)
    tokens = EntraTokens(credential, AZURE_SQL_SCOPE, clock=clock)

    assert tokens.token() == "eyJ.token-1"
    clock.now += 3600 - 301
    assert tokens.token() == "eyJ.token-1"  # still 301 s to live
    clock.now += 1
    assert tokens.token() == "eyJ.token-2"  # 300 s left: refreshed before it can expire mid-connect
    assert len(credential.scopes) == 2


def test_each_new_connection_of_a_long_lived_engine_gets_a_fresh_enough_token(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(entra_sql.time, "time", clock)
    credential = StandInCredential(clock, lifetime=3600)
    engine = create_sql_engine(AZURE_SQL_URL, "entra", credential=credential)

    first = driver_arguments(engine).cparams["attrs_before"][SQL_COPT_SS_ACCESS_TOKEN]
    clock.now += 600
    again = driver_arguments(engine).cparams["attrs_before"][SQL_COPT_SS_ACCESS_TOKEN]
    clock.now += 3000  # 3600 s after the first token: it has expired
    later = driver_arguments(engine).cparams["attrs_before"][SQL_COPT_SS_ACCESS_TOKEN]

    assert [unpack_token_struct(t) for t in (first, again, later)] == ["eyJ.token-1", "eyJ.token-1", "eyJ.token-2"]


@pytest.mark.parametrize("url, refusal", [
    ("mssql+pyodbc://bscore:s3cret@srv.database.windows.net/db?driver=ODBC+Driver+18+for+SQL+Server",
     "holds a password"),
    ("postgresql+psycopg://bscore:s3cret@srv.postgres.database.azure.com/db", "holds a password"),
    ("mssql+pyodbc://@srv/db?odbc_connect=DRIVER%3D%7BX%7D%3BPWD%3Ds3cret", "holds a password"),
    ("sqlite:///bscore.db", "not sqlite+pysqlite"),
    ("mysql+pymysql://me@srv/db", "not mysql+pymysql"),
    ("mssql+pymssql://@srv/db", "through pyodbc only"),
    ("mssql+pyodbc://bscore@srv/db?driver=ODBC+Driver+18+for+SQL+Server", "names a user (bscore)"),
    ("mssql+pyodbc://@srv/db?driver=ODBC+Driver+18+for+SQL+Server&Authentication=ActiveDirectoryMsi",
     "ODBC Authentication mode"),
    ("postgresql+psycopg://@srv.postgres.database.azure.com/db", "has no user"),
])
def test_urls_that_cannot_take_a_token_are_refused_by_name(url, refusal):
    with pytest.raises(ValueError, match=re.escape(refusal)) as refused:
        create_sql_engine(url, "entra", credential=StandInCredential(Clock()))
    assert str(refused.value).startswith("BSCORE_SQL_URL") or "BSCORE_SQL_URL" in str(refused.value)
    assert "s3cret" not in str(refused.value)


def test_settings_refuse_an_unknown_mode_and_a_password_beside_entra():
    with pytest.raises(ValueError, match="BSCORE_SQL_AUTH='msi' must be one of password, entra"):
        Settings.from_env({"BSCORE_SQL_AUTH": "msi"})
    with pytest.raises(ValueError, match="BSCORE_SQL_URL holds a password") as refused:
        Settings.from_env({"BSCORE_SQL_AUTH": "entra",
                           "BSCORE_SQL_URL": "postgresql+psycopg://me:s3cret@srv.postgres.database.azure.com/db"})
    assert "s3cret" not in str(refused.value)
    assert Settings.from_env({"BSCORE_SQL_AUTH": "entra", "BSCORE_SQL_URL": AZURE_SQL_URL}).sql_auth == "entra"
    assert Settings.from_env({}).sql_auth == "password"


def test_host_sql_store_and_shard_reader_sign_in_with_tokens_on_every_path(postgres_url, monkeypatch):
    """The host's resource writes (SQLAlchemy, COPY) and reads (ADBC), the job reads: all with a token."""
    import adbc_driver_postgresql.dbapi as adbc_postgresql

    credential = StandInCredential(Clock())
    monkeypatch.setattr(entra_sql, "default_credential", lambda: credential)
    adbc_uris = []
    real_connect = adbc_postgresql.connect
    monkeypatch.setattr(adbc_postgresql, "connect", lambda uri, **kw: adbc_uris.append(uri) or real_connect(uri, **kw))
    url = sa.make_url(postgres_url).set(username="postgres", password=None).render_as_string(hide_password=False)

    store = SqlStore(url=url, auth="entra")
    start = pd.Timestamp("2026-03-01T00:00")
    rows = pd.DataFrame({"ts": pd.date_range(start + pd.Timedelta(seconds=5), periods=3, freq="5s"),
                         "device": "d1", "sensor": "s1", "value": [1.0, 2.0, 3.0], "readings": 5})
    store.replace_sensor_values(rows, start, start + pd.Timedelta(hours=1))
    with store.engine.connect() as conn:
        assert conn.connection.dbapi_connection.info.password == "eyJ.token-1"
    read = store.read_sensor_values(start, start + pd.Timedelta(hours=1))
    job_read = ShardSql(url, "entra").read_sensor_values(start, start + pd.Timedelta(hours=1))

    assert read["value"].tolist() == job_read["value"].tolist() == [1.0, 2.0, 3.0]
    # The host's engine and the job's each keep their own token (the stand-in numbers them);
    # every ADBC read, the host's and the job's, signed in with one.
    issued = {f"eyJ.token-{n}" for n in range(1, len(credential.scopes) + 1)}
    assert len(adbc_uris) >= 2 and {sa.make_url(uri).password for uri in adbc_uris} == issued == {
        "eyJ.token-1", "eyJ.token-2"}
    assert {scope for (scope,) in credential.scopes} == {AZURE_POSTGRES_SCOPE}


def test_check_entra_url_names_the_variable_it_was_given():
    with pytest.raises(ValueError, match="^AZUREML_SQL_URL holds a password"):
        check_entra_url("postgresql+psycopg://me:pw@srv/db", "AZUREML_SQL_URL")
