"""The database engine: one place for its settings (SQLite's pragmas, PostgreSQL's URL and pool)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from parley.errors import ConfigError
from parley.store.sqlite import POOLED_PRAGMAS, InlineSQLite, is_sqlite, pragmas

SessionFactory = async_sessionmaker[AsyncSession]


def create_engine(url: str, *, pool_size: int = 30, max_overflow: int = 0) -> AsyncEngine:
    """An async engine with WAL and a busy timeout on SQLite, a sized pool on PostgreSQL.

    On PostgreSQL the pool keeps every connection it opens (up to ``pool_size``): with overflow
    connections, each burst of requests opened connections (TLS asked for, a server process
    forked) only to close them when it passed. A connection is checked as it leaves the pool
    (:func:`_ping`), so that one the server dropped meanwhile is replaced, not handed out."""
    if is_sqlite(url):
        database = make_url(url).database or ""
        if InlineSQLite.usable(url) and not database.startswith("file:"):  # not a URI filename
            private_file(Path(database))
        # Writers take turns in the Store (one at a time, holding a connection only while they
        # write), readers are short: a small pool serves hundreds of concurrent runs. Each
        # connection is a thread with its own page cache, so a big pool costs memory per stream.
        engine = create_async_engine(
            url, connect_args={"timeout": 30}, pool_size=8, max_overflow=12, pool_timeout=60
        )
        event.listen(engine.sync_engine, "connect", pragmas(*POOLED_PRAGMAS))
        return engine
    engine_url, connect_args = for_asyncpg(url)
    engine = create_async_engine(
        engine_url, connect_args=connect_args, pool_size=pool_size, max_overflow=max_overflow
    )
    event.listen(engine.sync_engine, "checkout", _ping)
    return engine


def _ping(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    """``pool_pre_ping`` in one round trip: SQLAlchemy's asyncpg ping wraps its query in a
    transaction (BEGIN, a prepared ``;``, ROLLBACK), three round trips before every
    checkout. A simple query needs no transaction, behind PgBouncer too. A failed ping makes the
    pool drop the connection and open another (SQLAlchemy's ``DisconnectionError``)."""
    try:
        dbapi_connection.run_async(lambda connection: connection.execute("SELECT 1"))
    except Exception as exc:
        raise DisconnectionError(str(exc)) from exc


# libpq's URL query parameters (as hosts hand the URL out), by what asyncpg does with them
_LIBPQ_SCHEMES = ("postgresql", "postgres")
_ASYNCPG_KEYWORDS = {"sslmode": "ssl", "target_session_attrs": "target_session_attrs"}
_ASYNCPG_DSN = (  # read by asyncpg from a DSN only: the files and limits of a verified TLS link
    "passfile",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "sslcrl",
    "sslpassword",
    "sslnegotiation",
    "ssl_min_protocol_version",
    "ssl_max_protocol_version",
    "krbsrvname",
    "gsslib",
)
_SERVER_SETTINGS = ("application_name", "options", "client_encoding")
_CLIENT_ONLY = (  # libpq's own socket and handshake knobs, which asyncpg has no counterpart for
    "channel_binding",
    "connect_timeout",  # taken as asyncpg's timeout below
    "fallback_application_name",
    "gssencmode",
    "gssdelegation",
    "hostaddr",
    "keepalives",
    "keepalives_count",
    "keepalives_idle",
    "keepalives_interval",
    "load_balance_hosts",
    "require_auth",
    "requirepeer",
    "sslcertmode",
    "sslcompression",
    "sslcrldir",
    "sslsni",
    "tcp_user_timeout",
)


def for_asyncpg(url: str) -> tuple[URL, dict[str, Any]]:
    """``url`` as SQLAlchemy's asyncpg dialect takes it, and the connect arguments beside it.

    A libpq URL (``postgresql://`` or ``postgres://``, no driver) gets the ``asyncpg`` driver;
    ``sslmode`` becomes asyncpg's ``ssl`` (the same modes), ``connect_timeout`` its ``timeout``,
    ``application_name``, ``options`` and ``client_encoding`` server settings, the TLS files a
    DSN of asyncpg's own; libpq's client-side knobs are dropped, and any other parameter is a
    :class:`ConfigError`. Any other URL is returned as it is.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(str(exc)) from None
    if parsed.drivername not in _LIBPQ_SCHEMES:
        return parsed, {}
    query = {
        name: value if isinstance(value, str) else value[-1] for name, value in parsed.query.items()
    }
    unknown = sorted(
        set(query) - {*_ASYNCPG_KEYWORDS, *_ASYNCPG_DSN, *_SERVER_SETTINGS, *_CLIENT_ONLY}
    )
    if unknown:
        raise ConfigError(
            f"the database URL's parameter {unknown[0]!r} is not one parley can pass to"
            " PostgreSQL (asyncpg); remove it"
        )
    keywords = {_ASYNCPG_KEYWORDS[k]: v for k, v in query.items() if k in _ASYNCPG_KEYWORDS}
    connect_args: dict[str, Any] = {}
    timeout = _seconds(query.get("connect_timeout", "0"))
    if timeout > 0:  # libpq's 0: wait forever
        connect_args["timeout"] = timeout
    settings = {k: v for k, v in query.items() if k in _SERVER_SETTINGS}
    if settings:
        connect_args["server_settings"] = settings
    dsn = {k: v for k, v in query.items() if k in _ASYNCPG_DSN}
    if dsn:
        connect_args["dsn"] = URL.create("postgresql", query=dsn).render_as_string()
    return parsed.set(drivername="postgresql+asyncpg", query=keywords), connect_args


def _seconds(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise ConfigError(
            f"the database URL's connect_timeout={value!r} is not a number of seconds"
        ) from None


def private_file(path: Path) -> None:
    """Create the database file readable by its owner only (0600, as SQLite then makes its WAL),
    in a directory that is too (0700) when it is made here; an existing one is left as it is."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def session_factory(engine: AsyncEngine) -> SessionFactory:
    return async_sessionmaker(engine, expire_on_commit=False)


async def ping(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))
