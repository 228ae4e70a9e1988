"""The chat request's statements on SQLite's inline connection: the driver's cursor, same rows."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import bindparam, event, insert, select
from sqlalchemy.exc import IntegrityError

from parley.chat.ids import new_id
from parley.store.db import Prepared, create_engine, session_factory
from parley.store.repositories import CONVERSATIONS, INSERT_RUN, RUNS, Store


@pytest.fixture
async def store(sqlite_url: str) -> AsyncIterator[Store]:
    store = Store(session_factory(create_engine(sqlite_url)))
    yield store
    await store.close()


def _run(conversation_id: str) -> dict[str, Any]:
    return {
        "id": new_id("run"),
        "user_id": "alice",
        "conversation_id": conversation_id,
        "user_message_id": None,
        "message_id": new_id("msg"),
        "model": "scripted/demo",
        "status": "running",
        "owner": None,
        "state": {"patterns": ["é"]},
        "created_at": datetime.now(UTC),
    }


async def test_the_short_way_writes_and_reads_what_sqlalchemy_does(store: Store) -> None:
    """An INSERT run on the driver's cursor goes through the columns' type processing (JSON
    ``state``, UTC ``created_at``) exactly as SQLAlchemy's own execution does; a SELECT's row
    comes back as SQLAlchemy would return it."""
    convo = await store.create_conversation("alice", metadata={"tag": "é"}, temperature=0.5)
    assert store._inline is not None
    short, ordinary = _run(convo.id), _run(convo.id)
    store._inline.write(lambda conn: INSERT_RUN.execute(conn, short))
    async with store.engine.begin() as conn:  # aiosqlite: SQLAlchemy's own execution
        await conn.execute(insert(RUNS), ordinary)

    rows = store._inline.read(
        lambda conn: {
            r.id: r._asdict() for r in conn.execute(select(RUNS).order_by(RUNS.c.id)).all()
        }
    )
    a, b = rows[short["id"]], rows[ordinary["id"]]
    assert a["state"] == b["state"] == {"patterns": ["é"]}
    assert a["created_at"] == short["created_at"] and a["created_at"].tzinfo is not None
    differing = {k for k in a if a[k] != b[k]} - {"id", "message_id", "created_at"}
    assert differing == set()

    by_id = select(CONVERSATIONS).where(CONVERSATIONS.c.id == bindparam("b_conversation"))
    params = {"b_conversation": convo.id}
    fast = store._inline.read(lambda conn: Prepared(by_id).first(conn, params))
    async with store.engine.connect() as conn:
        slow = (await conn.execute(by_id, params)).one()._asdict()
    assert fast == slow
    assert fast is not None and fast["metadata"] == {"tag": "é"}
    assert isinstance(fast["created_at"], datetime) and fast["created_at"].tzinfo is not None


async def test_the_short_way_skips_sqlalchemys_execution_but_not_its_listeners(
    store: Store,
) -> None:
    """On the inline connection the statement goes to the driver's cursor (no
    ``before_execute``: SQLAlchemy's execution is not entered) and the cursor listeners the
    statement counts rely on still see it; on aiosqlite's connections it is an ordinary
    execute."""
    convo = await store.create_conversation("alice")
    engine = store.sync_engines[1]
    executed: list[object] = []
    cursor: list[str] = []
    event.listen(engine, "before_execute", lambda *a: executed.append(a[1]))
    event.listen(engine, "before_cursor_execute", lambda *a: cursor.append(a[2]))
    assert store._inline is not None
    store._inline.write(lambda conn: INSERT_RUN.execute(conn, _run(convo.id)))
    assert executed == []
    assert len(cursor) == 1 and cursor[0].startswith("INSERT INTO runs")

    threaded = store.engine.sync_engine
    seen: list[object] = []
    event.listen(threaded, "before_execute", lambda *a: seen.append(a[1]))
    async with store.engine.begin() as conn:
        await conn.run_sync(lambda sync: INSERT_RUN.execute(sync, _run(convo.id)))
    assert seen == [INSERT_RUN.statement]


@pytest.mark.parametrize("missing", ["message_id", "created_at", "state"])
async def test_a_missing_value_is_refused_not_written_as_null_or_a_default(
    store: Store, missing: str
) -> None:
    """Every column the short way writes must be given: it neither writes NULL nor stands in
    for SQLAlchemy's column defaults."""
    convo = await store.create_conversation("alice")
    incomplete = _run(convo.id)
    del incomplete[missing]
    assert store._inline is not None
    with pytest.raises(KeyError, match=missing):
        store._inline.write(lambda conn: INSERT_RUN.execute(conn, incomplete))
    count = store._inline.read(lambda conn: len(conn.execute(select(RUNS)).all()))
    assert count == 0


async def test_a_driver_error_is_raised_as_sqlalchemys(store: Store) -> None:
    """A constraint the short way's statement breaks is SQLAlchemy's ``IntegrityError``, as on
    every other path (callers and the tool runner tell storage errors by it), and the
    transaction is rolled back."""
    convo = await store.create_conversation("alice")
    run = _run(convo.id)
    assert store._inline is not None
    store._inline.write(lambda conn: INSERT_RUN.execute(conn, run))
    with pytest.raises(IntegrityError) as raised:
        store._inline.write(lambda conn: INSERT_RUN.execute(conn, run))  # the same id again
    assert isinstance(raised.value.orig, sqlite3.IntegrityError)
    orphan = _run("conv_missing")
    with pytest.raises(IntegrityError):
        store._inline.write(lambda conn: INSERT_RUN.execute(conn, orphan))  # foreign key
    count = store._inline.read(lambda conn: len(conn.execute(select(RUNS)).all()))
    assert count == 1
