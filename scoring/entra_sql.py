"""Sign in to Azure SQL and Azure Database for PostgreSQL with Microsoft Entra tokens, no password.

With ``BSCORE_SQL_AUTH=entra`` every new database connection gets a fresh-enough access token
from ``DefaultAzureCredential`` (the Dagster host's or the Azure ML cluster's managed identity),
injected through SQLAlchemy's ``do_connect`` event: pyodbc receives it as the
``SQL_COPT_SS_ACCESS_TOKEN`` connection attribute (1256, a length-prefixed UTF-16-LE struct, as
Microsoft documents for ODBC Driver 18), psycopg as the password. A token is reused until five
minutes before it expires, so a pool opening connections does not ask for one each time.

A URL that cannot sign in with a token is refused by name before any connection: one holding a
password (the token would be ignored or the secret would leak into job definitions), a
dialect other than ``mssql+pyodbc`` or ``postgresql``, an ``mssql`` URL naming a user or an ODBC
``Authentication`` mode (both conflict with an access token), a ``postgresql`` URL without the
Entra principal's name as its user. Used by ``resources.sql`` on the host and by
``scoring.shard_sql`` in the scoring job, so it imports neither Dagster nor the orchestrator.
"""

from __future__ import annotations

import os
import re
import struct
import threading
import time
import weakref

import sqlalchemy as sa

AUTH_MODES = ("password", "entra")
AZURE_SQL_SCOPE = "https://database.windows.net/.default"
AZURE_POSTGRES_SCOPE = "https://ossrdbms-aad.database.windows.net/.default"
SQL_COPT_SS_ACCESS_TOKEN = 1256  # msodbcsql.h: a pre-connect attribute holding the token struct
REFRESH_MARGIN_SECONDS = 300
_SECRET_QUERY_KEYS = {"password", "pwd", "odbc_connect"}
_engine_tokens: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def check_entra_url(url: str | sa.URL, variable: str = "BSCORE_SQL_URL") -> sa.URL:
    """The URL parsed, or a ``ValueError`` naming ``variable`` and why it cannot take a token.

    Parameters
    ----------
    url : str or sqlalchemy.URL
        The database URL ``BSCORE_SQL_AUTH=entra`` will sign in to.
    variable : str
        The name the error gives the URL (never its value).

    Returns
    -------
    sqlalchemy.URL
    """
    parsed = sa.make_url(url)
    backend, driver = parsed.get_backend_name(), parsed.get_driver_name()
    query_keys = {key.lower() for key in parsed.query}
    if backend not in ("mssql", "postgresql"):
        raise ValueError(f"BSCORE_SQL_AUTH=entra signs in to Azure SQL (mssql+pyodbc) or Azure PostgreSQL "
                         f"(postgresql+psycopg), not {backend}+{driver}: fix {variable} or set BSCORE_SQL_AUTH=password")
    if parsed.password or _SECRET_QUERY_KEYS & query_keys:
        raise ValueError(f"{variable} holds a password (or an odbc_connect string) while BSCORE_SQL_AUTH=entra: "
                         "remove it, the managed identity's token replaces it")
    if backend == "mssql":
        if driver != "pyodbc":
            raise ValueError(f"{variable}: Entra tokens reach Azure SQL through pyodbc only (mssql+pyodbc), "
                             f"not mssql+{driver}")
        if parsed.username:
            raise ValueError(f"{variable} names a user ({parsed.username}) while BSCORE_SQL_AUTH=entra: ODBC "
                             "refuses a user beside an access token; use mssql+pyodbc://@<server>.database.windows.net/<db>")
        if "authentication" in query_keys:
            raise ValueError(f"{variable} sets an ODBC Authentication mode while BSCORE_SQL_AUTH=entra: remove it, "
                             "bscore passes the token itself")
    elif not parsed.username:
        raise ValueError(f"{variable} has no user while BSCORE_SQL_AUTH=entra: Azure PostgreSQL needs the Entra "
                         "principal's name as the user (the managed identity's name, URL-encoded)")
    return parsed


class EntraTokens:
    """Access tokens for one scope, fetched from ``credential`` and reused until
    ``refresh_margin_seconds`` before they expire. Thread-safe: pools connect from many threads."""

    def __init__(self, credential, scope: str, refresh_margin_seconds: float = REFRESH_MARGIN_SECONDS,
                 clock=None):
        self.credential, self.scope = credential, scope
        self.refresh_margin_seconds, self.clock = refresh_margin_seconds, clock
        self._token = None
        self._lock = threading.Lock()

    def token(self) -> str:
        """A token valid for at least ``refresh_margin_seconds`` more."""
        with self._lock:
            now = (self.clock or time.time)()
            if self._token is None or self._token.expires_on - now <= self.refresh_margin_seconds:
                self._token = self.credential.get_token(self.scope)
            return self._token.token


def odbc_token_struct(token: str) -> bytes:
    """The ``SQL_COPT_SS_ACCESS_TOKEN`` value: the token's UTF-16-LE bytes after their length."""
    encoded = token.encode("utf-16-le")
    return struct.pack(f"<I{len(encoded)}s", len(encoded), encoded)


def default_credential():
    """The process's Azure identity, built where every Azure credential is built
    (:func:`scoring.azure_storage.azure_credential`)."""
    from scoring.azure_storage import azure_credential

    return azure_credential()


def attach_entra_tokens(engine: sa.Engine, credential=None) -> EntraTokens:
    """Make every new connection of ``engine`` sign in with a token (see the module docstring).

    Parameters
    ----------
    engine : sqlalchemy.Engine
        An engine on a URL :func:`check_entra_url` accepts (checked here).
    credential : azure.core.credentials.TokenCredential, optional
        Defaults to :func:`default_credential`.

    Returns
    -------
    EntraTokens
        The engine's token cache.
    """
    url = check_entra_url(engine.url)
    mssql = url.get_backend_name() == "mssql"
    tokens = EntraTokens(credential or default_credential(), AZURE_SQL_SCOPE if mssql else AZURE_POSTGRES_SCOPE)

    @sa.event.listens_for(engine, "do_connect")
    def sign_in_with_token(dialect, conn_rec, cargs, cparams):
        if mssql:
            # SQLAlchemy asks for Windows sign-in when a URL has no user; it conflicts with a token.
            cargs[0] = re.sub(r";?Trusted_Connection=Yes", "", cargs[0], flags=re.IGNORECASE)
            cparams["attrs_before"] = {**cparams.get("attrs_before", {}),
                                       SQL_COPT_SS_ACCESS_TOKEN: odbc_token_struct(tokens.token())}
        else:
            cparams["password"] = tokens.token()

    _engine_tokens[engine] = tokens
    return tokens


def entra_password(engine: sa.Engine) -> str | None:
    """A current token for a connection the engine does not open itself (ADBC on PostgreSQL),
    or None when the engine signs in with what its URL holds."""
    tokens = _engine_tokens.get(engine)
    return tokens.token() if tokens is not None else None


def sql_auth(value: str | None, variable: str = "BSCORE_SQL_AUTH") -> str:
    """``password`` (the default) or ``entra``; anything else is an error naming ``variable``."""
    mode = (value or "password").strip().lower()
    if mode not in AUTH_MODES:
        raise ValueError(f"{variable}={value!r} must be one of {', '.join(AUTH_MODES)}")
    return mode


def create_sql_engine(url: str, auth: str = "password", credential=None, **options) -> sa.Engine:
    """``sqlalchemy.create_engine(url, **options)``, signing in with Entra tokens when ``auth`` is ``entra``."""
    entra = sql_auth(auth) == "entra"
    if entra:
        check_entra_url(url)  # before create_engine, so the refusal is bscore's, not a driver's
    engine = sa.create_engine(url, **options)
    if entra:
        attach_entra_tokens(engine, credential)
    return engine
