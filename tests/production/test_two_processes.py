"""Two parley processes on loopback share PostgreSQL and Redis: any process serves any run."""

from __future__ import annotations

import asyncio

import pytest
from tests.conftest import auth
from tests.fakes.openai_server import FakeOpenAI, paced
from tests.support.processes import ParleyProcess
from tests.support.sse import collect, kinds, text
from tests.support.wait import until

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]


async def _conversation(http_url: str) -> str:
    import httpx

    async with httpx.AsyncClient(base_url=http_url, headers=auth("alice")) as http:
        return str((await http.post("/api/conversations", json={})).json()["id"])


def _client(process: ParleyProcess):  # type: ignore[no-untyped-def]
    import httpx

    return httpx.AsyncClient(base_url=process.url, headers=auth("alice"), timeout=20)


async def test_a_run_started_on_a_resumes_on_b_with_no_gap(
    pair: tuple[ParleyProcess, ParleyProcess], fake: FakeOpenAI
) -> None:
    a, b = pair
    fake.enqueue(paced(30, 40))
    cid = await _conversation(a.url)
    async with _client(a) as on_a, _client(b) as on_b:
        first, seen = await collect(
            on_a,
            "POST",
            f"/api/conversations/{cid}/messages",
            json_body={"content": "hi"},
            stop_after="content",
        )
        run_id = first.headers["x-run-id"]
        _, rest = await collect(
            on_b, "GET", f"/api/runs/{run_id}/events", headers={"Last-Event-ID": seen[-1].id}
        )
        _, full = await collect(on_b, "GET", f"/api/runs/{run_id}/events")
    assert text(seen + rest) == "x" * 30
    assert [(e.id, e.data) for e in seen + rest] == [(e.id, e.data) for e in full]
    assert kinds(rest)[-2:] == ["done", "[DONE]"]


async def test_cancel_from_b_stops_the_model_running_on_a(
    pair: tuple[ParleyProcess, ParleyProcess], fake: FakeOpenAI
) -> None:
    a, b = pair
    fake.enqueue(paced(500, 40))
    cid = await _conversation(a.url)
    async with _client(a) as on_a, _client(b) as on_b:
        stream = asyncio.create_task(
            collect(on_a, "POST", f"/api/conversations/{cid}/messages", json_body={"content": "go"})
        )
        await until(lambda: bool(fake.exchanges) and fake.exchanges[-1].frames_sent >= 3)
        cancelled = await on_b.post(f"/api/runs/{(await _run(on_b, cid))}/cancel")
        assert cancelled.json()["status"] == "cancelled"
        # Within a second on a quiet machine (bench/ measures it); generous here for loaded CI.
        async with asyncio.timeout(5):
            await fake.cut_off.wait()
        _, events = await asyncio.wait_for(stream, 10)
        convo = (await on_b.get(f"/api/conversations/{cid}")).json()
    assert events[-2].data["finish_reason"] == "cancelled"
    assert fake.exchanges[-1].cut_off
    assert convo["messages"][-1]["status"] == "cancelled"
    assert 0 < len(text(events)) < 500


async def _run(http, cid: str) -> str:  # type: ignore[no-untyped-def]
    convo = (await http.get(f"/api/conversations/{cid}")).json()
    assert convo["active_run_id"], convo
    return str(convo["active_run_id"])


async def test_a_killed_process_fails_its_runs_for_subscribers_on_b(
    pair: tuple[ParleyProcess, ParleyProcess], fake: FakeOpenAI
) -> None:
    a, b = pair
    fake.enqueue(paced(1000, 30))
    cid = await _conversation(a.url)
    async with _client(a) as on_a, _client(b) as on_b:
        first, seen = await collect(
            on_a,
            "POST",
            f"/api/conversations/{cid}/messages",
            json_body={"content": "go"},
            stop_after="content",
        )
        run_id = first.headers["x-run-id"]
        watcher = asyncio.create_task(
            collect(
                on_b, "GET", f"/api/runs/{run_id}/events", headers={"Last-Event-ID": seen[-1].id}
            )
        )
        await asyncio.sleep(1.5)  # past the first checkpoint
        a.kill()
        _, events = await asyncio.wait_for(watcher, 15)
        convo = (await on_b.get(f"/api/conversations/{cid}")).json()
    assert kinds(events)[-2:] == ["error", "[DONE]"]
    assert "stopped" in events[-2].data["error"]["message"]
    assistant = convo["messages"][-1]
    assert assistant["status"] == "interrupted"
    assert assistant["parts"][-1]["text"].startswith("x")
