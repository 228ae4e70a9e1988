"""A client resumes a reply whose ``parley serve`` was SIGKILLed, from the restarted server, on
both hubs: every resume ends by itself with the run's end, and the ids it gets are above the
client's (the restarted server does not number the run's end 1 again).

On the in-process hub the events died with the process: the restarted server answers from the
store. On Redis they survive, and the restarted server's sweep appends the run's end to them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from httpx_sse import aconnect_sse
from tests.conftest import REDIS_URL, SECRET, auth
from tests.fakes.openai_server import FakeOpenAI, paced
from tests.support.processes import ParleyProcess, fake_openai_env, start_parley
from tests.support.sse import Event, collect, kinds

pytestmark = pytest.mark.slow

DEADLINE = 20.0  # the Redis sweep notices the dead owner within two owner TTLs
TERMINAL = {"done", "error"}


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as server:
        yield server


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def hub_env(request: pytest.FixtureRequest) -> dict[str, str]:
    if request.param == "memory":
        return {}
    return {"PARLEY_REDIS_URL": REDIS_URL, "PARLEY_OWNER_TTL": "1"}


@contextlib.asynccontextmanager
async def _running(env: dict[str, str], tmp_path: Path, name: str) -> AsyncIterator[ParleyProcess]:
    process = await start_parley(env, tmp_path, name=name)
    try:
        yield process
    finally:
        process.kill()


def _client(process: ParleyProcess) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=process.url, headers=auth("alice"), timeout=20)


async def _first_events(http: httpx.AsyncClient, url: str, count: int) -> list[Event]:
    """The reply's first ``count`` content events, then the client goes away (the run goes on)."""
    seen: list[Event] = []
    async with aconnect_sse(http, "POST", url, json={"content": "tell me a story"}) as source:
        async for sse in source.aiter_sse():
            seen.append(Event(id=sse.id, event=sse.event, data=json.loads(sse.data)))
            if sum(e.event == "content" for e in seen) >= count:
                return seen
    raise AssertionError(f"the reply ended early: {kinds(seen)}")


async def _resume(http: httpx.AsyncClient, run_id: str, after: int) -> list[Event]:
    async with asyncio.timeout(DEADLINE):
        response, events = await collect(
            http, "GET", f"/api/runs/{run_id}/events", headers={"Last-Event-ID": str(after)}
        )
    assert response.status_code == 200, response.text
    assert kinds(events)[-1] == "[DONE]" and kinds(events)[-2] in TERMINAL, kinds(events)
    return events[:-1]


def _ids(events: list[Event]) -> list[int]:
    return [int(e.id) for e in events]


async def test_a_reply_cut_by_sigkill_resumes_from_the_restarted_server_and_ends(
    fake: FakeOpenAI, sqlite_url: str, tmp_path: Path, hub_env: dict[str, str]
) -> None:
    fake.enqueue(paced(1000, 20))
    env = fake_openai_env(sqlite_url, fake.base_url, tmp_path, SECRET, **hub_env)
    async with _running(env, tmp_path, "first") as first, _client(first) as http:
        cid = (await http.post("/api/conversations", json={})).json()["id"]
        seen = await _first_events(http, f"/api/conversations/{cid}/messages", 60)
        first.kill()
    run_id, middle = seen[0].data["run_id"], int(seen[-1].id)

    async with _running(env, tmp_path, "second") as second, _client(second) as http:
        rest = await _resume(http, run_id, middle)
        end = int(rest[-1].id)
        from_start = await _resume(http, run_id, 0)
        at_end = await _resume(http, run_id, end)
        past_end = await _resume(http, run_id, end + 1_000)
        chat = await http.get(f"/api/chat/{cid}/stream")
    assert min(_ids(rest)) > middle and _ids(rest) == sorted(set(_ids(rest)))
    assert kinds(from_start)[0] == "start" and _ids(from_start) == sorted(set(_ids(from_start)))
    assert [e.event for e in at_end] == [e.event for e in past_end] == [rest[-1].event]
    assert min(_ids(at_end)) >= end
    assert chat.status_code == 204  # the Vercel door: the chat has no active run any more
