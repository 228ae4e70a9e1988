"""Checkpoints of many streaming replies are saved together, and never after a reply's end."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import event

from parley.chat.ids import new_id
from parley.store import Store
from parley.store.checkpoints import CheckpointWriter
from parley.store.db import create_engine, session_factory


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    store = Store(session_factory(create_engine(database_url)))
    yield store
    await store.close()


async def _streaming_reply(store: Store, user: str) -> str:
    convo = await store.create_conversation(user)
    _, assistant = await store.begin_turn(
        user,
        convo.id,
        user_parts=[{"type": "text", "text": "hi"}],
        parent_id=None,
        model="scripted/demo",
        run_id=new_id("run"),
        title=None,
    )
    return assistant.id


def _parts(text: str) -> list[dict[str, Any]]:
    return [{"type": "text", "text": text}]


async def test_many_replies_checkpointed_at_once_cost_one_commit(store: Store) -> None:
    replies = [await _streaming_reply(store, "alice") for _ in range(30)]
    writer = CheckpointWriter(store)
    commits: list[object] = []

    def committed(conn: object) -> None:
        commits.append(conn)

    sync_engine = store.sessions.kw["bind"].sync_engine
    event.listen(sync_engine, "commit", committed)
    try:
        for i, message_id in enumerate(replies):
            writer.submit("alice", message_id, _parts(f"so far {i}"))
        await writer.aclose()
    finally:
        event.remove(sync_engine, "commit", committed)
    assert len(commits) == 1
    convo_of = {m: await _conversation_of(store, m) for m in replies}
    for i, message_id in enumerate(replies):
        saved = await store.get_message("alice", convo_of[message_id], message_id)
        assert saved.text == f"so far {i}"


async def test_a_checkpoint_never_lands_after_the_reply_was_settled(store: Store) -> None:
    message_id = await _streaming_reply(store, "alice")
    convo = await _conversation_of(store, message_id)
    writer = CheckpointWriter(store)
    writer.submit("alice", message_id, _parts("first second"))
    await writer.settle(message_id)  # may be saving already: waits for it
    writer.submit("alice", message_id, _parts("stale"))
    await writer.settle(message_id)  # not started yet: dropped
    await store.checkpoint("alice", message_id, _parts("the final text"))
    await writer.aclose()
    saved = await store.get_message("alice", convo, message_id)
    assert saved.text == "the final text"


async def test_a_checkpoint_for_another_users_reply_writes_nothing(store: Store) -> None:
    message_id = await _streaming_reply(store, "alice")
    convo = await _conversation_of(store, message_id)
    writer = CheckpointWriter(store)
    writer.submit("mallory", message_id, _parts("not yours"))
    await writer.aclose()
    assert (await store.get_message("alice", convo, message_id)).text == ""


async def _conversation_of(store: Store, message_id: str) -> str:
    from sqlalchemy import select

    from parley.store.tables import Message

    async with store.sessions() as session:
        row = (await session.execute(select(Message).where(Message.id == message_id))).scalar_one()
    return row.conversation_id
