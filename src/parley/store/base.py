"""The store's engine, its transactions and SQLite's one writer at a time.

Every statement runs in a plain function of a SQLAlchemy ``Connection``, handed to
:meth:`StoreBase.read` or :meth:`StoreBase.write`, which run it in one transaction: on SQLite's
loop connection (:class:`~parley.store.sqlite.InlineSQLite`) when asked and possible, else
through the async driver (``AsyncConnection.run_sync``). SQLAlchemy's errors leave as
:class:`~parley.store.errors.StorageError`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, Executable
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncEngine

from parley.store import tables
from parley.store.db import SessionFactory
from parley.store.errors import storage_errors
from parley.store.sqlite import Busy, InlineSQLite
from parley.store.values import utcnow

T = TypeVar("T")
Work = Callable[[Connection], T]


class StoreBase:
    """The transactions every aggregate's store runs its statements in."""

    # SQLite's WAL is copied into the database after this many writes on the loop's connection
    WAL_CHECKPOINT_EVERY = 256

    def __init__(self, sessions: SessionFactory) -> None:
        self.sessions = sessions  # for tests that look at the rows through the ORM
        self.engine: AsyncEngine = sessions.kw["bind"]
        self.dialect = self.engine.dialect.name
        self._known_users: set[str] = set()
        # SQLite has one writer at a time. Left to its busy handler, many concurrent runs'
        # writers poll for the file lock and some give up ("database is locked"); queued here,
        # they take turns in order and each holds a connection only while it writes.
        self._sqlite_writer = asyncio.Lock() if self.dialect == "sqlite" else None
        url = self.engine.url.render_as_string(hide_password=False)
        self._inline = InlineSQLite(url) if InlineSQLite.usable(url) else None
        self._inline_writes = 0
        self._background: set[asyncio.Task[None]] = set()

    @property
    def sync_engines(self) -> list[Engine]:
        """Every engine the store's statements go through (to listen for them: tests, bench)."""
        engines = [self.engine.sync_engine]
        if self._inline is not None:
            engines.append(self._inline.engine)
        return engines

    async def close(self) -> None:
        for task in list(self._background):
            with contextlib.suppress(Exception):
                await task
        if self._inline is not None:
            self._inline.dispose()
        await self.engine.dispose()

    async def read(self, work: Work[T], *, on_loop: bool = False) -> T:
        """``work(connection)`` in a read transaction; with ``on_loop``, on the loop's own
        SQLite connection unless another process holds the lock."""
        with storage_errors():
            if on_loop and self._inline is not None:
                with contextlib.suppress(Busy):
                    return self._inline.read(work)
            async with self.engine.connect() as conn:
                return await conn.run_sync(work)

    async def write(self, work: Work[T], *, on_loop: bool = False) -> T:
        """``work(connection)`` in one write transaction, committed when it returns, after this
        process's other writers on SQLite; ``on_loop`` as for :meth:`read` (a writer that waits
        for another process's lock waits off the loop)."""
        with storage_errors():
            async with self._writer_turn():
                if on_loop and self._inline is not None:
                    with contextlib.suppress(Busy):
                        result = self._inline.write(work)
                        self._wrote_inline()
                        return result
                async with self.engine.begin() as conn:
                    return await conn.run_sync(work)

    async def _changed(self, stmt: Executable) -> bool:
        """Run one UPDATE or DELETE in its own transaction; whether it changed a row."""
        return await self.write(lambda conn: bool(conn.execute(stmt).rowcount))

    def _writer_turn(self) -> contextlib.AbstractAsyncContextManager[Any]:
        return self._sqlite_writer or contextlib.nullcontext()

    def _wrote_inline(self) -> None:
        self._inline_writes += 1
        if self._inline_writes % self.WAL_CHECKPOINT_EVERY == 0:
            task = asyncio.create_task(self.checkpoint_wal())
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def checkpoint_wal(self) -> None:
        """Copy SQLite's WAL into the database, on a worker thread (the loop's own connection
        never does: that copy and its fsync would stop every stream)."""
        async with self.engine.connect() as conn:
            await conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")

    async def ensure_user(self, user_id: str) -> None:
        """Create the user row on the first valid token with a new ``sub``."""
        if user_id in self._known_users:
            return
        insert = pg_insert if self.dialect == "postgresql" else sqlite_insert
        stmt = insert(tables.users).values(id=user_id, created_at=utcnow())
        await self.write(lambda conn: conn.execute(stmt.on_conflict_do_nothing()), on_loop=True)
        self._known_users.add(user_id)
