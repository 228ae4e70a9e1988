"""Crash safety: ``parley serve`` is SIGKILLed mid-reply, or while a run waits for an approval,
and started again on the same database (DESIGN.md section 5).

* mid-reply: the user message and the partial reply survive, the reply is ``interrupted`` and at
  most about a second of chunks behind what the client saw, the conversation takes the next
  message, and nothing is duplicated;
* awaiting approval: after the restart the approval is accepted over HTTP, the tool runs exactly
  once, and the reply completes.

Each runs on SQLite and on PostgreSQL (``database_url``; PostgreSQL skips when unreachable).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_sse import aconnect_sse
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import create_async_engine
from tests.conftest import SECRET, auth
from tests.fakes.openai_server import FakeOpenAI, paced, text, tool_calls
from tests.support.processes import ParleyProcess, fake_openai_env, start_parley
from tests.support.sse import Event, collect, kinds
from tests.support.wait import until

from parley.store.tables import Message, Task

pytestmark = pytest.mark.slow

CHUNKS, EVERY_MS = 400, 20
ONE_SECOND = 1000 // EVERY_MS  # chunks the fake sends in a second
SLACK = 20  # the checkpoint's own write, and scheduling on a loaded machine


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as server:
        yield server


def _env(database_url: str, fake: FakeOpenAI, tmp_path: Path, **extra: str) -> dict[str, str]:
    return fake_openai_env(database_url, fake.base_url, tmp_path, SECRET, **extra)


@contextlib.asynccontextmanager
async def _running(env: dict[str, str], tmp_path: Path, name: str) -> AsyncIterator[ParleyProcess]:
    process = await start_parley(env, tmp_path, name=name)
    try:
        yield process
    finally:
        process.kill()


def _client(process: ParleyProcess) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=process.url, headers=auth("alice"), timeout=20)


async def _stream_into(http: httpx.AsyncClient, url: str, seen: list[Event]) -> None:
    """Append each event as it arrives; a killed server just ends the stream."""
    with contextlib.suppress(httpx.TransportError):
        async with aconnect_sse(http, "POST", url, json={"content": "tell me a story"}) as source:
            async for sse in source.aiter_sse():
                data = sse.data if sse.data == "[DONE]" else json.loads(sse.data)
                seen.append(Event(id=sse.id, event=sse.event, data=data))


def _text(message: dict[str, Any]) -> str:
    return "".join(p.get("text", "") for p in message["parts"] if p["type"] == "text")


def _seen_text(events: list[Event]) -> str:
    return "".join(e.data["content"] for e in events if e.event == "content")


async def _count(database_url: str, table: Any, **where: Any) -> int:
    engine = create_async_engine(database_url)
    try:
        query = select(func.count()).select_from(table).filter_by(**where)
        async with engine.connect() as conn:
            return int((await conn.execute(query)).scalar_one())
    finally:
        await engine.dispose()


async def test_a_reply_cut_by_sigkill_is_kept_interrupted_and_the_conversation_goes_on(
    database_url: str, fake: FakeOpenAI, tmp_path: Path
) -> None:
    fake.enqueue(paced(CHUNKS, EVERY_MS), text("All ", "good."))
    env = _env(database_url, fake, tmp_path)
    seen: list[Event] = []
    async with _running(env, tmp_path, "first") as first, _client(first) as http:
        cid = (await http.post("/api/conversations", json={})).json()["id"]
        url = f"/api/conversations/{cid}/messages"
        stream = asyncio.create_task(_stream_into(http, url, seen))
        past_checkpoint = ONE_SECOND * 3 // 2
        await until(lambda: len(_seen_text(seen)) >= past_checkpoint or stream.done(), timeout=30)
        assert not stream.done(), f"the stream ended early: {kinds(seen)[-3:]}, {first.log}"
        first.kill()
        async with asyncio.timeout(10):
            await stream
    saw = _seen_text(seen)
    assert 0 < len(saw) < CHUNKS, "the kill should land mid-reply"

    async with _running(env, tmp_path, "second") as second, _client(second) as http:
        got = await http.get(f"/api/conversations/{cid}")
        assert got.status_code == 200, got.text
        user, reply = got.json()["messages"]
        assert (user["role"], _text(user)) == ("user", "tell me a story")
        assert (reply["role"], reply["status"]) == ("assistant", "interrupted")
        kept = _text(reply)
        assert kept and set(kept) == {"x"}
        assert len(saw) - ONE_SECOND - SLACK <= len(kept) <= CHUNKS, (len(kept), len(saw))

        response, events = await collect(http, "POST", url, json_body={"content": "go on"})
        assert response.status_code == 200 and kinds(events)[-2:] == ["done", "[DONE]"]
        after = (await http.get(f"/api/conversations/{cid}")).json()["messages"]
    assert [(m["role"], m["status"]) for m in after] == [
        ("user", "complete"),
        ("assistant", "interrupted"),
        ("user", "complete"),
        ("assistant", "complete"),
    ]
    assert _text(after[1]) == kept and _text(after[3]) == "All good."
    assert await _count(database_url, Message, conversation_id=cid) == 4
    assert len(fake.exchanges) == 2, "the interrupted reply must not be asked for again"
    fake.assert_done()


async def test_a_run_awaiting_approval_survives_sigkill_and_runs_the_tool_once(
    database_url: str, fake: FakeOpenAI, tmp_path: Path
) -> None:
    add = tool_calls(("call_milk", "add_task", ['{"title": ', '"buy milk"}']))
    fake.enqueue(add, text("Added ", "it."))
    env = _env(database_url, fake, tmp_path, PARLEY_APPROVALS="all")
    async with _running(env, tmp_path, "first") as first, _client(first) as http:
        cid = (await http.post("/api/conversations", json={})).json()["id"]
        response, events = await collect(
            http,
            "POST",
            f"/api/conversations/{cid}/messages",
            json_body={"content": "add buy milk"},
            stop_after="awaiting_input",
        )
        assert "tool_approval_required" in kinds(events), kinds(events)
        run_id = response.headers["x-run-id"]
        first.kill()

    async with _running(env, tmp_path, "second") as second, _client(second) as http:
        answer = await http.post(f"/api/runs/{run_id}/approvals/call_milk", json={"approved": True})
        assert answer.status_code == 200, answer.text
        async with asyncio.timeout(15):
            _, rest = await collect(http, "GET", f"/api/runs/{run_id}/events")
        assert kinds(rest)[-2:] == ["done", "[DONE]"], kinds(rest)
        audit = (await http.get(f"/api/conversations/{cid}/tool-calls")).json()["items"]
        messages = (await http.get(f"/api/conversations/{cid}")).json()["messages"]
    assert [(c["tool_name"], c["status"]) for c in audit] == [("add_task", "succeeded")]
    assert await _count(database_url, Task, user_id="alice", title="buy milk") == 1
    assert messages[-1]["status"] == "complete" and "Added it." in _text(messages[-1])
    fake.assert_done()
