"""The database engine: one place for dialect quirks (SQLite pragmas, pool settings)."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import ClauseElement, Connection, Engine, Executable, event, text
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import ConnectionPoolEntry, StaticPool
from sqlalchemy.sql.compiler import SQLCompiler

from parley.errors import ConfigError

SessionFactory = async_sessionmaker[AsyncSession]
T = TypeVar("T")


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


# Every SQLite connection: fsync only at checkpoints (WAL), foreign keys enforced. The pool's
# connections also make the file WAL, wait up to 10 s for the write lock and copy the WAL into the
# database as it grows; the loop's own connection (:class:`InlineSQLite`) does neither.
_SQLITE_PRAGMAS = ("synchronous=NORMAL", "foreign_keys=ON")
POOLED_PRAGMAS = ("journal_mode=WAL", *_SQLITE_PRAGMAS, "busy_timeout=10000")
INLINE_PRAGMAS = (*_SQLITE_PRAGMAS, "busy_timeout=0", "wal_autocheckpoint=0")


def _pragmas(*pragmas: str) -> Callable[[Any, ConnectionPoolEntry], None]:
    """A ``connect`` listener that sets ``pragmas`` on each new connection."""

    def apply(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        cursor = dbapi_connection.cursor()
        for pragma in pragmas:
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    return apply


def create_engine(url: str, *, pool_size: int = 10, max_overflow: int = 20) -> AsyncEngine:
    """An async engine with WAL and a busy timeout on SQLite, a sized pool on PostgreSQL."""
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
        event.listen(engine.sync_engine, "connect", _pragmas(*POOLED_PRAGMAS))
        return engine
    engine_url, connect_args = for_asyncpg(url)
    return create_async_engine(
        engine_url,
        connect_args=connect_args,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_pre_ping=True,
    )


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
    parsed = make_url(url)
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


class Busy(Exception):
    """Another process holds SQLite's write lock: the work must wait for it off the loop."""


class InlineSQLite:
    """Short SQLite transactions on the event loop's own thread.

    Through aiosqlite every statement crosses to a worker thread and back several times (cursor,
    execute, fetch, close), and each crossing wakes the loop: reading a conversation cost 0.4 to
    1 ms and committing a turn 0.9 to 1.5 ms before the model could be asked (bench/RESULTS.md),
    where SQLite itself takes tens of microseconds. The chat request's own small transactions
    run here instead, on one connection, without waiting:

    - ``busy_timeout`` is 0: when another process holds the write lock, :class:`Busy` is raised
      at once (the transaction rolled back) and the caller runs the work on the thread pool,
      where waiting does not stop the loop. Writers of this process take turns before they get
      here (``Store``), and WAL readers never wait.
    - ``wal_autocheckpoint`` is 0: copying the WAL into the database (and its fsync) would stop
      the loop; the store checkpoints from a worker thread instead (``Store.checkpoint_wal``).
    """

    def __init__(self, url: str) -> None:
        sync_url = make_url(url).set(drivername="sqlite+pysqlite")
        self.engine: Engine = create_sync_engine(sync_url, poolclass=StaticPool)
        event.listen(self.engine, "connect", _pragmas(*INLINE_PRAGMAS))
        self._conn: Connection | None = None

    @staticmethod
    def usable(url: str) -> bool:
        """A SQLite database in a file (an in-memory one is per connection)."""
        database = make_url(url).database if is_sqlite(url) else None
        return bool(database) and database != ":memory:" and "mode=memory" not in url

    def _connection(self) -> Connection:
        """One connection, kept: checking one out of a pool and back (with its reset) for each
        transaction cost more than the transaction's statements."""
        conn = self._conn
        if conn is None or conn.closed or conn.invalidated:
            conn = self._conn = self.engine.connect()
        return conn

    def read(self, work: Callable[[Connection], T]) -> T:
        conn = self._connection()
        try:
            with _busy_raises():
                return work(conn)
        finally:
            conn.rollback()  # ends the read's transaction: nothing to undo

    def write(self, work: Callable[[Connection], T]) -> T:
        conn = self._connection()
        with _busy_raises(), conn.begin():
            return work(conn)

    def dispose(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self.engine.dispose()


@contextlib.contextmanager
def _busy_raises() -> Iterator[None]:
    try:
        yield
    except OperationalError as exc:
        if _is_busy(exc.orig):
            raise Busy(str(exc.orig)) from exc
        raise


Params = Mapping[str, Any]


class Prepared:
    """A statement of the chat request's path, taking the short way on InlineSQLite's connection.

    Through SQLAlchemy, a statement already compiled and cached still costs its execution
    context, parameter processing and result set-up: 50 µs warm, and 350 to 450 µs on a request
    that comes after 20 ms of idleness (caches cold, as every chat request's are), where
    sqlite3's own ``execute`` takes 10 to 130 µs (bench/RESULTS.md, seventh session). On a
    connection whose driver is :mod:`sqlite3` (the loop's own, :class:`InlineSQLite`) the
    statement is compiled once by SQLAlchemy for that dialect and run on the driver's cursor:
    parameters and results still go through the columns' own type processors (JSON, UTC
    times), the transaction is still the ``Connection``'s, the engine's
    ``before_cursor_execute`` and ``after_cursor_execute`` listeners still see the statement,
    and a driver error is raised as SQLAlchemy's (``IntegrityError``, ``OperationalError``).
    Its callers give every value (no column default is applied here). On any other connection
    it is an ordinary ``conn.execute``.
    """

    def __init__(self, statement: Executable, *, keys: Sequence[str] | None = None) -> None:
        self.statement = statement
        self.keys = list(keys) if keys is not None else None
        self._compiled: _OnSQLite | None = None

    def execute(self, conn: Connection, params: Params | Sequence[Params]) -> int:
        """Run it (``executemany`` for a list of rows); the number of rows it changed."""
        if self._driver(conn) is None:
            return int(conn.execute(self.statement, params).rowcount)
        return self._sqlite(conn).run(conn, params).rowcount

    def first(self, conn: Connection, params: Params) -> dict[str, Any] | None:
        """The first row, by column name, or None."""
        if self._driver(conn) is None:
            row = conn.execute(self.statement, params).first()
            return None if row is None else dict(row._mapping)
        compiled = self._sqlite(conn)
        values = compiled.run(conn, params).fetchone()
        return None if values is None else compiled.row(values)

    def all(self, conn: Connection, params: Params) -> list[dict[str, Any]]:
        """Every row, by column name."""
        if self._driver(conn) is None:
            return [dict(row._mapping) for row in conn.execute(self.statement, params)]
        compiled = self._sqlite(conn)
        return [compiled.row(values) for values in compiled.run(conn, params).fetchall()]

    @staticmethod
    def _driver(conn: Connection) -> sqlite3.Connection | None:
        driver = conn.connection.driver_connection
        return driver if isinstance(driver, sqlite3.Connection) else None

    def _sqlite(self, conn: Connection) -> _OnSQLite:
        if self._compiled is None:
            self._compiled = _OnSQLite(self.statement, conn, self.keys)
        return self._compiled


class _OnSQLite:
    """A statement compiled for SQLite (qmark parameters), with its type processors."""

    def __init__(self, statement: Executable, conn: Connection, keys: list[str] | None) -> None:
        dialect = conn.dialect
        assert isinstance(statement, ClauseElement)
        compiled = statement.compile(dialect=dialect, column_keys=keys)
        assert isinstance(compiled, SQLCompiler)
        self.sql: str = compiled.string
        self.names: list[str] = list(compiled.positiontup or ())
        binds = compiled.binds
        # each type as the dialect has it (SQLite's DATETIME, JSON), as SQLAlchemy's own
        # execution takes its processors
        self.binds = [
            (name, binds[name].type.dialect_impl(dialect).bind_processor(dialect), binds[name])
            for name in self.names
        ]
        columns = getattr(statement, "selected_columns", ())
        self.columns = [
            (c.name, c.type.dialect_impl(dialect).result_processor(dialect, None)) for c in columns
        ]

    def run(self, conn: Connection, params: Params | Sequence[Params]) -> sqlite3.Cursor:
        many = not isinstance(params, Mapping)
        rows: list[Any]
        if isinstance(params, Mapping):
            rows = self._values(params)
        else:
            rows = [self._values(p) for p in params]
        for listen in conn.dispatch.before_cursor_execute:
            listen(conn, None, self.sql, rows, None, many)
        driver = conn.connection.driver_connection
        assert isinstance(driver, sqlite3.Connection)
        try:
            cursor = driver.executemany(self.sql, rows) if many else driver.execute(self.sql, rows)
        except sqlite3.Error as exc:  # as SQLAlchemy raises it on every other path
            raise DBAPIError.instance(self.sql, rows, exc, sqlite3.Error, ismulti=many) from exc
        for listen in conn.dispatch.after_cursor_execute:
            listen(conn, cursor, self.sql, rows, None, many)
        return cursor

    def _values(self, params: Params) -> list[Any]:
        """Each parameter's value, processed. Every column an INSERT writes must be given: a
        column's Python default (``default=utcnow``) is SQLAlchemy's execution's to apply, and
        this does not stand in for it."""
        values = []
        for name, process, bind in self.binds:
            if name in params:
                value = params[name]
            elif bind.value is not None and not bind.required:  # ``.values(status=...)``
                value = bind.effective_value
            else:
                raise KeyError(f"a value is required for bind parameter {name!r}")
            values.append(process(value) if process is not None else value)
        return values

    def row(self, values: Sequence[Any]) -> dict[str, Any]:
        return {
            name: process(value) if process is not None else value
            for (name, process), value in zip(self.columns, values, strict=True)
        }


def _is_busy(error: BaseException | None) -> bool:
    return isinstance(error, sqlite3.OperationalError) and (
        getattr(error, "sqlite_errorname", "") in ("SQLITE_BUSY", "SQLITE_LOCKED")
        or "locked" in str(error)
    )
