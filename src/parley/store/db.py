"""The database engine: one place for dialect quirks (SQLite pragmas, pool settings)."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, event, text
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import ConnectionPoolEntry, StaticPool

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
        database = make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        # Writers take turns in the Store (one at a time, holding a connection only while they
        # write), readers are short: a small pool serves hundreds of concurrent runs. Each
        # connection is a thread with its own page cache, so a big pool costs memory per stream.
        engine = create_async_engine(
            url, connect_args={"timeout": 30}, pool_size=8, max_overflow=12, pool_timeout=60
        )
        event.listen(engine.sync_engine, "connect", _pragmas(*POOLED_PRAGMAS))
        return engine
    return create_async_engine(
        url, pool_size=pool_size, max_overflow=max_overflow, pool_pre_ping=True
    )


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


def _is_busy(error: BaseException | None) -> bool:
    return isinstance(error, sqlite3.OperationalError) and (
        getattr(error, "sqlite_errorname", "") in ("SQLITE_BUSY", "SQLITE_LOCKED")
        or "locked" in str(error)
    )
