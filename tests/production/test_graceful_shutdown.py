"""SIGTERM to one of two processes during a reply (docs/deploy.md, "Graceful shutdown"): the reply
finishes on its open stream within ``PARLEY_SHUTDOWN_GRACE``; a reply longer than that is ended
cleanly on that stream, stopped and stored as interrupted, and a client resumes it on the other
process with no gap up to its end."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from httpx_sse import aconnect_sse
from tests.conftest import auth
from tests.fakes.openai_server import FakeOpenAI, paced
from tests.support.processes import ParleyProcess
from tests.support.sse import Event, collect, kinds, text
from tests.support.wait import until

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]
DEADLINE = 30.0


def _client(process: ParleyProcess) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=process.url, headers=auth("alice"), timeout=30)


async def _follow(http: httpx.AsyncClient, url: str, into: list[Event], body: Any) -> None:
    """Read a reply's stream into ``into`` as it comes, until the server ends it."""
    async with aconnect_sse(http, "POST", url, json=body) as source:
        async for sse in source.aiter_sse():
            if sse.data:
                data = sse.data if sse.data == "[DONE]" else json.loads(sse.data)
                into.append(Event(id=sse.id, event=sse.event, data=data))


async def _terminated_mid_reply(
    a: ParleyProcess, fake: FakeOpenAI, chunks: int
) -> tuple[str, str, list[Event]]:
    """Start a reply of ``chunks`` chunks on ``a``, SIGTERM it once some text has arrived, and
    return the conversation, the run and what ``a``'s stream gave until it ended."""
    fake.enqueue(paced(chunks, 50))
    seen: list[Event] = []
    async with _client(a) as on_a:
        cid = (await on_a.post("/api/conversations", json={})).json()["id"]
        reader = asyncio.create_task(
            _follow(on_a, f"/api/conversations/{cid}/messages", seen, {"content": "go"})
        )
        await until(lambda: sum(e.event == "content" for e in seen) >= 5, timeout=DEADLINE)
        a.process.terminate()
        async with asyncio.timeout(DEADLINE):
            await reader
    async with asyncio.timeout(DEADLINE):
        await asyncio.to_thread(a.process.wait)
    return cid, seen[0].data["run_id"], seen


@pytest.mark.parametrize("pair_env", [{"PARLEY_SHUTDOWN_GRACE": "20"}])
async def test_sigterm_lets_the_running_reply_finish_on_its_stream(
    pair: tuple[ParleyProcess, ParleyProcess], fake: FakeOpenAI
) -> None:
    a, b = pair
    cid, _, seen = await _terminated_mid_reply(a, fake, 40)
    assert kinds(seen)[-2:] == ["done", "[DONE]"]
    assert seen[-2].data["finish_reason"] == "stop"
    assert text(seen) == "x" * 40
    async with _client(b) as on_b:
        convo = (await on_b.get(f"/api/conversations/{cid}")).json()
    assert convo["messages"][-1]["status"] == "complete"
    assert "Traceback" not in a.log.read_text()


@pytest.mark.parametrize("pair_env", [{"PARLEY_SHUTDOWN_GRACE": "1"}])
async def test_a_reply_longer_than_the_grace_is_resumed_on_the_other_process_to_its_end(
    pair: tuple[ParleyProcess, ParleyProcess], fake: FakeOpenAI
) -> None:
    a, b = pair
    cid, run_id, seen = await _terminated_mid_reply(a, fake, 400)
    assert "[DONE]" not in kinds(seen) and "content" in kinds(seen)  # ended cleanly, mid-reply
    async with _client(b) as on_b:
        async with asyncio.timeout(DEADLINE):
            _, rest = await collect(
                on_b, "GET", f"/api/runs/{run_id}/events", headers={"Last-Event-ID": seen[-1].id}
            )
            _, whole = await collect(on_b, "GET", f"/api/runs/{run_id}/events")
        convo = (await on_b.get(f"/api/conversations/{cid}")).json()
    assert [(e.id, e.data) for e in seen + rest] == [(e.id, e.data) for e in whole]
    assert kinds(rest)[-2:] == ["done", "[DONE]"]
    assert rest[-2].data["finish_reason"] == "cancelled"
    stored = convo["messages"][-1]
    assert stored["status"] == "interrupted"
    assert 0 < len(text(seen + rest)) < 400
    assert stored["parts"][-1]["text"] == text(seen + rest)
