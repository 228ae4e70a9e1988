"""SQLite's quirks in one place: pragmas, WAL, the loop's own connection and busy handling.

The writer lock (one writer at a time, in order) is :class:`~parley.store.base.StoreBase`'s.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import ConnectionPoolEntry, StaticPool

T = TypeVar("T")

# Every SQLite connection: fsync only at checkpoints (WAL), foreign keys enforced. The pool's
# connections also make the file WAL, wait up to 10 s for the write lock and copy the WAL into the
# database as it grows; the loop's own connection (:class:`InlineSQLite`) does neither.
_SQLITE_PRAGMAS = ("synchronous=NORMAL", "foreign_keys=ON")
POOLED_PRAGMAS = ("journal_mode=WAL", *_SQLITE_PRAGMAS, "busy_timeout=10000")
INLINE_PRAGMAS = (*_SQLITE_PRAGMAS, "busy_timeout=0", "wal_autocheckpoint=0")


def pragmas(*names: str) -> Callable[[Any, ConnectionPoolEntry], None]:
    """A ``connect`` listener that sets ``names`` on each new connection."""

    def apply(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        cursor = dbapi_connection.cursor()
        for pragma in names:
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    return apply


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


class Busy(Exception):
    """Another process holds SQLite's write lock: the work must wait for it off the loop."""


class InlineSQLite:
    """Short SQLite transactions on the event loop's own thread, through a sync ``Engine``.

    Through aiosqlite every statement crosses to a worker thread and back several times, and
    each crossing wakes the loop, where SQLite itself takes tens of microseconds. The store's
    short transactions run here instead, on one connection, without waiting:

    - ``busy_timeout`` is 0: when another process holds the write lock, :class:`Busy` is raised
      at once (the transaction rolled back) and the caller runs the work on the thread pool,
      where waiting does not stop the loop. Writers of this process take turns before they get
      here, and WAL readers never wait.
    - ``wal_autocheckpoint`` is 0: copying the WAL into the database (and its fsync) would stop
      the loop; the store checkpoints from a worker thread instead.
    """

    def __init__(self, url: str) -> None:
        sync_url = make_url(url).set(drivername="sqlite+pysqlite")
        self.engine: Engine = create_engine(sync_url, poolclass=StaticPool)
        event.listen(self.engine, "connect", pragmas(*INLINE_PRAGMAS))
        self._conn: Connection | None = None

    @staticmethod
    def usable(url: str) -> bool:
        """A SQLite database in a file (an in-memory one is per connection)."""
        database = make_url(url).database if is_sqlite(url) else None
        return bool(database) and database != ":memory:" and "mode=memory" not in url

    def _connection(self) -> Connection:
        """One connection, kept: a pool's check-out and reset per transaction cost more than
        the transaction's statements."""
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
