"""A store method is one transaction on either path (the loop's SQLite connection or the async
driver): the same rows either way, all of it or nothing, and storage failures as StorageError."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select

from parley.chat.usage import TokenUsage
from parley.store import Store
from parley.store.db import create_engine, session_factory
from parley.store.errors import StorageError
from parley.store.tables import Message as MessageRow
from parley.store.values import RunState, ToolChoice


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    store = Store(session_factory(create_engine(database_url)))
    yield store
    await store.close()


async def _turn(store: Store, convo_id: str, run_id: str) -> str:
    _, reply = await store.begin_turn(
        "alice",
        convo_id,
        user_parts=[{"type": "text", "text": "hi é"}],
        parent_id=None,
        model="scripted/demo",
        run_id=run_id,
        title=None,
    )
    return reply.id


async def test_a_suspended_runs_state_comes_back_typed(store: Store) -> None:
    """``runs.state`` is written as JSON on the loop's connection and read back through the
    async driver as the same typed value (and a run that never suspended has none)."""
    convo = await store.create_conversation("alice")
    reply = await _turn(store, convo.id, "run_1")
    assert (await store.get_run("alice", "run_1")).state is None
    state = RunState(step=2, max_steps=5, model="scripted/demo", tools=ToolChoice(patterns=["é"]))
    await store.finish_turn(
        "alice",
        run_id="run_1",
        message_id=reply,
        conversation_id=convo.id,
        status="awaiting",
        parts=[],
        usage=TokenUsage(prompt_tokens=3),
        run_status="awaiting",
        run_state=state,
    )
    run = await store.get_run("alice", "run_1")
    assert run.state == state and run.status == "awaiting" and run.finished_at is None
    assert run.created_at.tzinfo is not None
    assert (await store.get_conversation("alice", convo.id)).prompt_tokens == 3


async def test_a_failed_statement_is_a_storage_error_and_nothing_of_the_turn_is_kept(
    store: Store,
) -> None:
    """The second turn reuses a run id: the database refuses the run, the error leaves the
    store as StorageError (what the tool runner and the command line tell storage errors by),
    and the turn's messages and moved leaf are rolled back with it."""
    convo = await store.create_conversation("alice")
    first = await _turn(store, convo.id, "run_1")
    with pytest.raises(StorageError):
        await _turn(store, convo.id, "run_1")
    async with store.sessions() as session:
        count = len((await session.execute(select(MessageRow.id))).all())
    assert count == 2
    assert (await store.get_conversation("alice", convo.id)).active_leaf_id == first
    await _turn(store, convo.id, "run_2")  # the connection is usable afterwards


async def test_a_run_is_claimed_out_of_awaiting_once_and_only_by_its_user(store: Store) -> None:
    convo = await store.create_conversation("alice")
    await _turn(store, convo.id, "run_1")
    await store.set_run("alice", "run_1", status="awaiting")
    assert await store.awaiting_runs() == [("run_1", "alice")]
    assert not await store.claim_run("mallory", "run_1", to="running", owner="p")
    assert await store.claim_run("alice", "run_1", to="running", owner="p")
    assert not await store.claim_run("alice", "run_1", to="cancelled", owner="q")
    run = await store.get_run("alice", "run_1")
    assert (run.status, run.owner) == ("running", "p")
