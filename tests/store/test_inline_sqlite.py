"""SQLite's short transactions run on the event loop's thread, and never make it wait."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import Connection, event
from sqlalchemy.engine import make_url

from parley.chat.ids import new_id
from parley.errors import NotFound
from parley.store import Store, migrate
from parley.store.db import create_engine, session_factory
from parley.store.sqlite import InlineSQLite


@pytest.fixture
async def store(sqlite_url: str) -> AsyncIterator[Store]:
    store = Store(session_factory(create_engine(sqlite_url)))
    yield store
    await store.close()


def _statements(engine: Any) -> list[str]:
    seen: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *a: seen.append(a[2]))
    return seen


async def _turn(store: Store, user: str, convo_id: str) -> None:
    await store.begin_turn(
        user,
        convo_id,
        user_parts=[{"type": "text", "text": "hi"}],
        parent_id=None,
        model="scripted/demo",
        run_id=new_id("run"),
        title="hi",
    )


async def test_a_turn_is_read_and_committed_on_the_loop_thread(store: Store) -> None:
    """The request's reads and its commit go through the loop's own connection, none through
    aiosqlite's threads (whose crossings cost more than SQLite's work)."""
    threaded = _statements(store.engine.sync_engine)
    inline_engine = store.sync_engines[1]
    inline = _statements(inline_engine)
    threads: set[int] = set()
    event.listen(
        inline_engine, "before_cursor_execute", lambda *a: threads.add(threading.get_ident())
    )

    convo = await store.create_conversation("alice")
    found = await store.get_conversation("alice", convo.id)
    await _turn(store, "alice", convo.id)
    branch = await store.branch(
        "alice", convo.id, leaf_id=(await store.get_conversation("alice", convo.id)).active_leaf_id
    )

    assert found.id == convo.id
    assert [m.role for m in branch] == ["user", "assistant"]
    assert threaded == []
    assert any(s.startswith("INSERT INTO runs") for s in inline)
    assert threads == {threading.get_ident()}


async def test_another_user_is_not_found_on_the_inline_path(store: Store) -> None:
    convo = await store.create_conversation("alice")
    await _turn(store, "alice", convo.id)
    leaf = (await store.get_conversation("alice", convo.id)).active_leaf_id
    assert len(await store.branch("alice", convo.id, leaf_id=leaf)) == 2  # there is a branch
    with pytest.raises(NotFound):
        await store.get_conversation("mallory", convo.id)
    with pytest.raises(NotFound):
        await _turn(store, "mallory", convo.id)
    assert await store.branch("mallory", convo.id, leaf_id=leaf) == []
    after = await store.get_conversation("alice", convo.id)
    assert after.active_leaf_id == leaf  # mallory's turn moved nothing


def test_the_kept_connection_is_clean_after_a_failed_read_or_write(sqlite_url: str) -> None:
    """The loop's one connection is kept between transactions: a read or a write that fails
    halfway must leave no transaction open (the next ``begin`` would refuse) and nothing
    written."""
    inline = InlineSQLite(sqlite_url)
    migrate.upgrade(sqlite_url)

    def fail_after(conn: Connection, statement: str) -> None:
        conn.exec_driver_sql(statement)
        raise RuntimeError("halfway")

    with pytest.raises(RuntimeError):
        inline.read(lambda conn: fail_after(conn, "SELECT count(*) FROM users"))
    with pytest.raises(RuntimeError):
        inline.write(
            lambda conn: fail_after(
                conn, "INSERT INTO users (id, created_at) VALUES ('lost', '2026-01-01')"
            )
        )
    inline.write(
        lambda conn: conn.exec_driver_sql(
            "INSERT INTO users (id, created_at) VALUES ('kept', '2026-01-01')"
        )
    )
    users = inline.read(lambda conn: conn.exec_driver_sql("SELECT id FROM users").scalars().all())
    assert users == ["kept"]
    inline.dispose()


async def test_a_write_lock_held_elsewhere_waits_off_the_loop(
    store: Store, sqlite_url: str
) -> None:
    """Another process holding SQLite's write lock: the write neither fails nor stops the loop;
    it waits on a worker thread and lands once the lock is released."""
    convo = await store.create_conversation("alice")
    other = sqlite3.connect(make_url(sqlite_url).database, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    threading.Timer(0.5, other.commit).start()
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    started = time.monotonic()
    try:
        await _turn(store, "alice", convo.id)
    finally:
        ticker.cancel()
        other.close()
    waited = time.monotonic() - started
    assert waited >= 0.4  # it did wait for the lock
    assert ticks >= 0.5 * waited / 0.01  # and the loop went on meanwhile
    after = await store.get_conversation("alice", convo.id)
    assert after.active_leaf_id is not None


async def test_the_wal_is_checkpointed_from_a_worker_thread(store: Store) -> None:
    """The loop's connection never copies the WAL into the database; every so many of its
    writes, a worker thread does."""
    threaded = _statements(store.engine.sync_engine)
    store.WAL_CHECKPOINT_EVERY = 5
    convo = await store.create_conversation("alice")
    for _ in range(9):
        await _turn(store, "alice", convo.id)
    await asyncio.gather(*store._background)
    checkpoints = [s for s in threaded if "wal_checkpoint" in s]
    assert (
        len(checkpoints) == 2
    )  # after the 5th and 10th of 11 writes (user, conversation, 9 turns)
