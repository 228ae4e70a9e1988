"""Persistence rules: user message first, checkpoints at most once a second, interrupted on restart."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import event
from tests.conftest import Live
from tests.support.sse import collect

from parley.providers.scripted import ScriptedProvider


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"checkpoint_interval": 0.05}


async def test_the_user_message_is_committed_before_the_model_is_called(
    live: Live, scripted: ScriptedProvider
) -> None:
    scripted.enqueue([{"wait": "go"}, {"text": "ok"}])
    store = live.services.store
    convo = await store.create_conversation("alice")
    async with live.client() as http:
        task = asyncio.create_task(
            collect(
                http,
                "POST",
                f"/api/conversations/{convo.id}/messages",
                json_body={"content": "first!"},
            )
        )
        await scripted.wait_for_requests(1)
        fresh = await store.get_conversation("alice", convo.id)
        branch = await store.branch("alice", convo.id, leaf_id=fresh.active_leaf_id)
        assert [(m.role, m.text, m.status) for m in branch] == [
            ("user", "first!", "complete"),
            ("assistant", "", "streaming"),
        ]
        scripted.release("go")
        await asyncio.wait_for(task, 5)


async def test_a_crash_mid_stream_keeps_the_checkpointed_text_and_restart_marks_it_interrupted(
    live: Live, scripted: ScriptedProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    scripted.enqueue([{"text": "one "}, {"delay": 0.1}, {"text": "two "}, {"delay": 0.1}])
    store = live.services.store
    dead = asyncio.Event()
    reached_the_end = asyncio.Event()

    async def process_dies(*args: Any, **kwargs: Any) -> None:
        reached_the_end.set()
        await dead.wait()

    monkeypatch.setattr(store, "finish_turn", process_dies)
    convo = await store.create_conversation("alice")
    async with live.client() as http:
        response, _ = await collect(
            http,
            "POST",
            f"/api/conversations/{convo.id}/messages",
            json_body={"content": "go"},
            stop_after="content",
        )
    await asyncio.wait_for(reached_the_end.wait(), 5)
    run = await store.get_run("alice", response.headers["x-run-id"])
    message = await store.get_message("alice", convo.id, run.message_id)
    assert (message.status, message.text) == ("streaming", "one two ")
    # As after a crash: the run belongs to a process that is gone.
    live.services.runs._tasks.pop(run.id)
    await store.set_run("alice", run.id, owner="dead-process")
    try:
        assert await live.services.runs.recover() == 1
    finally:
        dead.set()
    after = await store.get_message("alice", convo.id, run.message_id)
    assert (after.status, after.text) == ("interrupted", "one two ")
    branch = await store.branch(
        "alice", convo.id, leaf_id=(await store.get_conversation("alice", convo.id)).active_leaf_id
    )
    assert [m.role for m in branch] == ["user", "assistant"]
    dead.set()


async def test_nothing_is_written_per_token(live: Live, scripted: ScriptedProvider) -> None:
    """A long reply costs a constant number of statements (plus checkpoints), not one per chunk."""
    chunks = [f"t{i} " for i in range(500)]
    scripted.enqueue([{"text": chunks}], [{"text": chunks[:5]}])
    store = live.services.store
    engines = store.sync_engines
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    convo = await store.create_conversation("alice")
    for engine in engines:
        event.listen(engine, "before_cursor_execute", count)
    try:
        async with live.client() as http:
            await collect(
                http,
                "POST",
                f"/api/conversations/{convo.id}/messages",
                json_body={"content": "long"},
            )
            long_reply = len(statements)
            statements.clear()
            await collect(
                http,
                "POST",
                f"/api/conversations/{convo.id}/messages",
                json_body={"content": "short"},
            )
            short_reply = len(statements)
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", count)
    assert long_reply < 40
    assert abs(long_reply - short_reply) <= 4
