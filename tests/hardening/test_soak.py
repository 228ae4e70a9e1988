"""The soak (``make soak``: 30 minutes; skipped unless ``--soak-minutes`` is given).

200 conversations at once against a real ``parley serve`` on FakeOpenAI, each looping through
plain replies, todo tool calls behind approvals (approved and denied), cancels and reconnects
with ``Last-Event-ID``. After a warm-up the server's memory and open descriptors stay flat; at the
end the database holds exactly the messages the clients saw, with the text they saw.

The load is the same at minute 30 as at minute 10, so that "flat" can be asked of it: each of
the 200 slots is its own user (a todo list that grows by one task every five turns, not one
list for everyone) and starts a new conversation every ``TURNS_PER_CONVERSATION`` turns. With
one user and endless conversations, every turn's history and ``list_tasks`` result grew for the
whole run, and so did the memory of the 200 turns in flight (286 -> 404 MiB in a 30-minute run).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_sse import aconnect_sse
from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine
from starlette.requests import Request
from starlette.responses import Response
from tests.conftest import SECRET, auth
from tests.fakes.openai_server import FakeOpenAI, Scenario, text, tool_calls
from tests.support.proc import open_fds, rss_mb
from tests.support.processes import fake_openai_env, start_parley
from tests.support.sse import Event

from parley.store.tables import Message, ToolCall

pytestmark = pytest.mark.soak

CONVERSATIONS = 200
TURNS_PER_CONVERSATION = 20
SAMPLE_EVERY = 5.0  # seconds between memory samples
WARM_UP = 0.3  # of the duration


class RoutedOpenAI(FakeOpenAI):
    """Answers by what the request asks: a tool call for ``add:``/``list``, then a closing text;
    ``long`` streams slowly (something to cancel); anything else gets a short paced reply."""

    async def _handle(self, request: Request) -> Response:
        body = json.loads(await request.body())
        self.enqueue(_answer(body["messages"][-1]))
        return await super()._handle(request)


def _answer(last: dict[str, Any]) -> Scenario:
    if last["role"] == "tool":
        return text("Done ", "with ", "that.", interval=0.02)
    content = last["content"] if isinstance(last["content"], str) else json.dumps(last["content"])
    if content.startswith("add:"):
        args = json.dumps({"title": content[4:]})
        return tool_calls(("call_" + content[4:], "add_task", [args[:5], args[5:]]))
    if content.startswith("list"):
        return tool_calls(("call_" + content[5:], "list_tasks", ["{}"]))
    if content.startswith("long"):
        return text(*(f"<{k}>" for k in range(400)), interval=0.02)
    return text(*(f"[{k}]" for k in range(20)), interval=0.03)


@dataclass
class Turn:
    message_id: str
    user_message_id: str
    status: str
    text: str


@dataclass
class Conversation:
    http: httpx.AsyncClient
    id: str
    user: str
    turns: list[Turn] = field(default_factory=list)
    tools_run: int = 0

    @classmethod
    async def new(cls, http: httpx.AsyncClient, user: str) -> Conversation:
        created = await http.post("/api/conversations", json={}, headers=auth(user))
        assert created.status_code == 201, created.text
        return cls(http, created.json()["id"], user)

    async def say(self, content: str, *, cancel: bool = False, drop_after: int = 0) -> None:
        """One turn: send, read (answering approvals, dropping and resuming), record what came."""
        seen: list[Event] = []
        url = f"/api/conversations/{self.id}/messages"
        run_id = await self._read(
            "POST", url, {"content": content}, seen, cancel=cancel, drop_after=drop_after
        )
        while seen[-1].event != "done":
            if seen[-1].event == "awaiting_input":
                await self._answer(run_id, seen, approve=content.startswith("add:"))
            headers = {"Last-Event-ID": seen[-1].id}
            await self._read("GET", f"/api/runs/{run_id}/events", None, seen, headers=headers)
        start = seen[0].data
        status = "cancelled" if seen[-1].data["finish_reason"] == "cancelled" else "complete"
        said = "".join(e.data["content"] for e in seen if e.event == "content")
        self.turns.append(Turn(start["message_id"], start["user_message_id"], status, said))
        self.tools_run += sum(1 for e in seen if e.event == "tool_result")
        ids = [int(e.id) for e in seen]
        assert ids == sorted(set(ids)), f"gap or repeat in {ids}"

    async def _read(
        self,
        method: str,
        url: str,
        body: Any,
        seen: list[Event],
        *,
        headers: dict[str, str] | None = None,
        cancel: bool = False,
        drop_after: int = 0,
    ) -> str:
        """Append events until ``done``, ``awaiting_input``, or a deliberate drop."""
        async with aconnect_sse(
            self.http, method, url, json=body, headers={**auth(self.user), **(headers or {})}
        ) as source:
            assert source.response.status_code == 200, await source.response.aread()
            run_id = source.response.headers["x-run-id"]
            read = 0
            async for sse in source.aiter_sse():
                if not sse.data or sse.data == "[DONE]":
                    continue
                seen.append(Event(id=sse.id, event=sse.event, data=json.loads(sse.data)))
                read += 1
                if sse.event in ("done", "awaiting_input") or read == drop_after:
                    break
                if cancel and read == 5:
                    cancelled = await self.http.post(
                        f"/api/runs/{run_id}/cancel", headers=auth(self.user)
                    )
                    assert cancelled.status_code == 200, cancelled.text
        return run_id

    async def _answer(self, run_id: str, seen: list[Event], *, approve: bool) -> None:
        asked = [e.data for e in seen if e.event == "tool_approval_required"]
        answered = await self.http.post(
            f"/api/runs/{run_id}/approvals/{asked[-1]['tool_call_id']}",
            json={"approved": approve},
            headers=auth(self.user),
        )
        assert answered.status_code == 200, answered.text


async def _converse(slot: list[Conversation], deadline: float, number: int) -> None:
    """One slot's turns, in a new conversation every ``TURNS_PER_CONVERSATION``."""
    for step in itertools.count():
        if time.monotonic() >= deadline:
            return
        if step and step % TURNS_PER_CONVERSATION == 0:
            slot.append(await Conversation.new(slot[-1].http, slot[-1].user))
        convo = slot[-1]
        tag = f"{number}-{step}"
        match (number + step) % 5:
            case 0:
                await convo.say(f"add:{tag}")
            case 1:
                await convo.say(f"list {tag}")
            case 2:
                await convo.say(f"long {tag}", cancel=True)
            case 3:
                await convo.say(f"hello {tag}", drop_after=7)
            case _:
                await convo.say(f"hello {tag}")


@dataclass
class Sample:
    at: float
    rss: float
    fds: int


async def _sample(pid: int, samples: list[Sample]) -> None:
    started = time.monotonic()
    while True:
        samples.append(Sample(time.monotonic() - started, rss_mb(pid), open_fds(pid)))
        await asyncio.sleep(SAMPLE_EVERY)  # a sampling period, not synchronisation


async def _stored(database_url: str, conversation_ids: list[str]) -> tuple[list[Any], int]:
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            messages = (
                await conn.execute(
                    select(Message.id, Message.role, Message.status, Message.text).where(
                        Message.conversation_id.in_(conversation_ids)
                    )
                )
            ).all()
            calls = (
                await conn.execute(select(ToolCall.id).where(ToolCall.status == "succeeded"))
            ).all()
        return list(messages), len(calls)
    finally:
        await engine.dispose()


@pytest.fixture
async def fake() -> AsyncIterator[RoutedOpenAI]:
    async with RoutedOpenAI() as server:
        yield server


async def test_200_conversations_with_tools_approvals_cancels_and_reconnects_stay_flat(
    request: pytest.FixtureRequest, sqlite_url: str, fake: RoutedOpenAI, tmp_path: Path
) -> None:
    minutes = float(request.config.getoption("--soak-minutes"))
    # PARLEY_RUN_TTL: the hub's retention reaches its steady state in the warm-up
    env = fake_openai_env(
        sqlite_url, fake.base_url, tmp_path, SECRET, PARLEY_APPROVALS="all", PARLEY_RUN_TTL="10"
    )
    parley = await start_parley(env, tmp_path)
    pid = parley.process.pid
    samples: list[Sample] = []
    limits = httpx.Limits(max_connections=2 * CONVERSATIONS + 20)
    try:
        async with httpx.AsyncClient(base_url=parley.url, timeout=60, limits=limits) as http:
            firsts = [Conversation.new(http, f"soak-{n}") for n in range(CONVERSATIONS)]
            slots = [[convo] for convo in await asyncio.gather(*firsts)]
            sampler = asyncio.create_task(_sample(pid, samples))
            deadline = time.monotonic() + minutes * 60
            await asyncio.gather(*(_converse(slot, deadline, n) for n, slot in enumerate(slots)))
            sampler.cancel()
            idle_fds = open_fds(pid)
            healthz = await http.get("/healthz")
        convos = [convo for slot in slots for convo in slot]
        stored, tools = await _stored(sqlite_url, [c.id for c in convos])
    finally:
        parley.stop()

    assert healthz.status_code == 200
    seen = {t.message_id: t for c in convos for t in c.turns}
    users = {t.user_message_id for c in convos for t in c.turns}
    replies = {m.id: m for m in stored if m.role == "assistant"}
    assert replies.keys() == seen.keys(), "lost or extra replies"
    assert {m.id for m in stored if m.role == "user"} == users, "lost or extra user messages"
    assert [(m.status, m.text) for m in replies.values()] == [
        (seen[i].status, seen[i].text) for i in replies
    ]
    assert tools == sum(c.tools_run for c in convos)

    warm = [s for s in samples if s.at >= minutes * 60 * WARM_UP]
    print(
        f"\n{len(seen)} turns, {tools} tool calls run, "
        f"{sum(t.status == 'cancelled' for t in seen.values())} cancelled; "
        f"RSS {samples[0].rss:.0f} -> {warm[0].rss:.0f} (warm) -> {samples[-1].rss:.0f} MiB, "
        f"max after warm-up {max(s.rss for s in warm):.0f}; "
        f"fds {samples[0].fds} -> {warm[0].fds} (warm) -> max {max(s.fds for s in warm)}, "
        f"{idle_fds} idle"
    )
    assert max(s.rss for s in warm) - warm[0].rss < 50, [round(s.rss) for s in samples]
    # Open descriptors follow the load (sockets of the streams in flight): flat means no upward
    # trend after the warm-up, and back near the start once the clients are gone.
    half = len(warm) // 2
    early, late = max(s.fds for s in warm[: half or 1]), max(s.fds for s in warm[half:])
    assert late < early + 60, [s.fds for s in samples]
    assert idle_fds < samples[0].fds + 40, (samples[0].fds, idle_fds)
