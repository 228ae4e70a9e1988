"""The store hands out frozen values that read exactly like the rows the ORM loads."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import inspect, select

from parley.store import Store
from parley.store.db import create_engine, session_factory
from parley.store.tables import Conversation as ConversationRow
from parley.store.tables import Message as MessageRow
from parley.store.values import Conversation, Message


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    store = Store(session_factory(create_engine(database_url)))
    yield store
    await store.close()


def _columns(obj: object, cls: type) -> dict[str, object]:
    return {attr.key: getattr(obj, attr.key) for attr in inspect(cls).column_attrs}


async def _rows(store: Store, cls: type, ident: str) -> dict[str, object]:
    async with store.sessions() as session:
        row = (await session.execute(select(cls).where(cls.id == ident))).scalar_one()  # type: ignore[attr-defined]
    return _columns(row, cls)


async def test_a_value_is_a_snapshot_that_cannot_be_changed(store: Store) -> None:
    convo = await store.create_conversation("alice", title="t")
    assert isinstance(convo, Conversation)
    with pytest.raises(dataclasses.FrozenInstanceError):
        convo.title = "changed"  # type: ignore[misc]
    assert (await store.get_conversation("alice", convo.id)).title == "t"


async def test_the_conversation_and_the_new_turn_come_back_as_stored(store: Store) -> None:
    created = await store.create_conversation("alice", title="t", metadata={"k": "é"})
    read = await store.get_conversation("alice", created.id)
    assert _columns(read, ConversationRow) == _columns(created, ConversationRow)
    assert _columns(read, ConversationRow) == await _rows(store, ConversationRow, created.id)
    assert read.metadata_ == {"k": "é"}
    user, assistant = await store.begin_turn(
        "alice",
        created.id,
        user_parts=[{"type": "text", "text": "hi"}],
        parent_id=None,
        model="scripted/demo",
        run_id="run_1",
        title=None,
    )
    assert user is not None and isinstance(assistant, Message)
    stored = await store.branch("alice", created.id, leaf_id=assistant.id)
    assert [_columns(m, MessageRow) for m in stored] == [
        _columns(user, MessageRow),
        _columns(assistant, MessageRow),
    ]
    assert _columns(assistant, MessageRow) == await _rows(store, MessageRow, assistant.id)
    assert assistant.created_at.tzinfo is not None


async def test_a_branch_reads_as_the_orm_reads_it_oldest_first_and_owned(store: Store) -> None:
    """One statement walks up from the leaf and returns the messages: the same rows as the
    ORM's own query, oldest first, the newest ``limit`` of them, none for another user, none
    from another conversation, a sibling branch walked from its own leaf."""
    convo = await store.create_conversation("alice")
    leaf = None
    for n in range(4):
        _, reply = await store.begin_turn(
            "alice",
            convo.id,
            user_parts=[{"type": "text", "text": f"q{n} é"}],
            parent_id=leaf,
            model="scripted/demo",
            run_id=f"run_{n}",
            title=None,
        )
        leaf = reply.id
    whole = await store.branch("alice", convo.id, leaf_id=leaf)
    assert [m.depth for m in whole] == list(range(8))
    async with store.sessions() as session:
        orm = {m.id: m for m in (await session.execute(select(MessageRow))).scalars()}
    assert [_columns(m, MessageRow) for m in whole] == [
        _columns(orm[m.id], MessageRow) for m in whole
    ]
    assert whole[0].parts == [{"type": "text", "text": "q0 é"}]

    last_three = await store.branch("alice", convo.id, leaf_id=leaf, limit=3)
    assert [m.id for m in last_three] == [m.id for m in whole[-3:]]
    assert await store.branch("mallory", convo.id, leaf_id=leaf) == []
    other = await store.create_conversation("alice")
    assert await store.branch("alice", other.id, leaf_id=leaf) == []

    _, sibling = await store.begin_turn(
        "alice",
        convo.id,
        user_parts=[{"type": "text", "text": "again"}],
        parent_id=whole[3].id,
        model="scripted/demo",
        run_id="run_s",
        title=None,
    )
    fork = await store.branch("alice", convo.id, leaf_id=sibling.id)
    assert [m.id for m in fork[:4]] == [m.id for m in whole[:4]]
    assert [m.depth for m in fork] == list(range(6))
