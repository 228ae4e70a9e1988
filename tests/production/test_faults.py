"""Redis and PostgreSQL out of reach for a moment, through proxy ports the tests cut (the shared
servers themselves are never touched): a run under way ends cleanly, what was committed stays,
and ``/readyz`` says which server is out of reach while it lasts, and ``ok`` once it is back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from tests.conftest import POSTGRES_URL, REDIS_URL, auth
from tests.fakes.openai_server import FakeOpenAI, paced
from tests.support.processes import ParleyProcess
from tests.support.sse import collect, kinds, text
from tests.support.tcp_proxy import TcpProxy, proxy_to
from tests.support.wait import until

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]


@pytest.fixture
async def redis_proxy() -> AsyncIterator[TcpProxy]:
    async with proxy_to(REDIS_URL) as proxy:
        yield proxy


@pytest.fixture
async def postgres_proxy() -> AsyncIterator[TcpProxy]:
    async with proxy_to(POSTGRES_URL) as proxy:
        yield proxy


@pytest.fixture
def pair_env(redis_proxy: TcpProxy, postgres_proxy: TcpProxy) -> dict[str, str]:
    return {
        "PARLEY_REDIS_URL": redis_proxy.url(REDIS_URL),
        "PARLEY_DATABASE_URL": postgres_proxy.url(POSTGRES_URL),
    }


async def _readiness(http: httpx.AsyncClient, status: int) -> dict[str, Any]:
    """Poll ``/readyz`` until it answers ``status``; its body."""
    deadline = time.monotonic() + 10
    while True:
        answer = await http.get("/readyz")
        if answer.status_code == status:
            body: dict[str, Any] = answer.json()
            return body
        assert time.monotonic() < deadline, answer.text
        await asyncio.sleep(0.05)


async def _started(http: httpx.AsyncClient, fake: FakeOpenAI) -> tuple[str, asyncio.Task[Any]]:
    cid = str((await http.post("/api/conversations", json={})).json()["id"])
    stream = asyncio.create_task(
        collect(http, "POST", f"/api/conversations/{cid}/messages", json_body={"content": "hi"})
    )
    await until(lambda: bool(fake.exchanges) and fake.exchanges[-1].frames_sent >= 5)
    return cid, stream


def _client(process: ParleyProcess) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=process.url, headers=auth("alice"), timeout=20)


async def test_redis_cut_mid_stream_the_run_finishes_and_every_instance_has_all_of_it(
    pair: tuple[ParleyProcess, ParleyProcess], fake: FakeOpenAI, redis_proxy: TcpProxy
) -> None:
    a, b = pair
    fake.enqueue(paced(80, 30))
    async with _client(a) as on_a, _client(b) as on_b:
        assert (await _readiness(on_a, 200))["checks"]["redis"] == "ok"
        cid, stream = await _started(on_a, fake)
        redis_proxy.cut()
        checks = (await _readiness(on_a, 503))["checks"]
        assert checks["redis"].startswith("unreachable") and checks["database"] == "ok"
        redis_proxy.restore()
        assert (await _readiness(on_a, 200))["checks"]["redis"] == "ok"
        first, events = await asyncio.wait_for(stream, 20)
        _, replayed = await collect(on_b, "GET", f"/api/runs/{first.headers['x-run-id']}/events")
        convo = (await on_b.get(f"/api/conversations/{cid}")).json()
    assert text(events) == "x" * 80
    assert kinds(events)[-2:] == ["done", "[DONE]"]
    assert [(e.id, e.data) for e in replayed] == [(e.id, e.data) for e in events]
    assert convo["messages"][-1]["status"] == "complete"


async def test_postgres_out_of_reach_mid_stream_the_run_ends_cleanly_and_keeps_what_was_committed(
    pair: tuple[ParleyProcess, ParleyProcess], fake: FakeOpenAI, postgres_proxy: TcpProxy
) -> None:
    a, _ = pair
    fake.enqueue(paced(80, 30))
    async with _client(a) as on_a:
        assert (await _readiness(on_a, 200))["checks"]["database"] == "ok"
        cid, stream = await _started(on_a, fake)
        postgres_proxy.cut()
        checks = (await _readiness(on_a, 503))["checks"]
        assert checks["database"].startswith("unreachable") and checks["redis"] == "ok"
        postgres_proxy.restore()
        assert (await _readiness(on_a, 200))["checks"]["database"] == "ok"
        _, events = await asyncio.wait_for(stream, 20)
        convo = (await on_a.get(f"/api/conversations/{cid}")).json()
    assert kinds(events)[-1] == "[DONE]"
    assert kinds(events)[-2] in ("done", "error")
    user, reply = convo["messages"][-2:]
    assert user["role"] == "user" and user["parts"][0]["text"] == "hi"
    if kinds(events)[-2] == "done":
        assert reply["status"] == "complete" and text(events) == "x" * 80
    else:
        assert reply["status"] == "error"
