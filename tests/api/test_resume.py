"""Every door that resumes a run ends by itself, on both hubs, wherever the client stands: before
the start (``Last-Event-ID: 0``), in the middle, at the end, past the end, and after a restart.
A browser ``EventSource`` reconnects whenever a stream closes, so a resume of a finished run has
to close at once; a run's ids never go back, even across a restart (runs/base.py).

The restart here is of a run waiting for an approval, which holds no task: stopping the first
app is then what a kill is. A kill in the middle of a reply is in
tests/hardening/test_resume_after_crash.py."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.api.test_vercel import WEATHER_CALL, body, types, ui, user_message, weather_tool
from tests.conftest import REDIS_URL, Live, make_settings, serve
from tests.support.sse import Event, collect, kinds

from parley.providers.scripted import ScriptedProvider
from parley.tools.registry import ToolRegistry

DEADLINE = 5.0
POINTS = ["before start", "middle", "at end", "past end"]


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def settings_overrides(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Each test runs on the in-process hub and again on Redis."""
    return {} if request.param == "memory" else {"redis_url": REDIS_URL}


async def _conversation(http: httpx.AsyncClient) -> str:
    return str((await http.post("/api/conversations", json={})).json()["id"])


async def _resume(http: httpx.AsyncClient, run_id: str, after: int) -> list[Event]:
    """The native door's answer to a client that saw every event up to ``after``."""
    headers = {"Last-Event-ID": str(after)}
    async with asyncio.timeout(DEADLINE):
        response, events = await collect(http, "GET", f"/api/runs/{run_id}/events", headers=headers)
    assert response.status_code == 200, response.text
    assert kinds(events)[-1] == "[DONE]", kinds(events)
    return events[:-1]


async def _resume_chat(
    http: httpx.AsyncClient, chat_id: str, headers: dict[str, str] | None = None
) -> tuple[httpx.Response, list[Any]]:
    async with asyncio.timeout(DEADLINE):
        return await ui(http, None, url=f"/api/chat/{chat_id}/stream", headers=headers)


async def _follow_chat(
    http: httpx.AsyncClient, chat_id: str, scripted: ScriptedProvider
) -> list[Any]:
    """The Vercel door's resume of a running chat, releasing the run's gate once attached."""
    chunks: list[Any] = []
    async with (
        asyncio.timeout(DEADLINE),
        http.stream("GET", f"/api/chat/{chat_id}/stream") as response,
    ):
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                raw = line.removeprefix("data: ")
                chunks.append(raw if raw == "[DONE]" else json.loads(raw))
                scripted.release("go")
    return chunks


def _wire(events: list[Event]) -> list[tuple[int, str, Any]]:
    return [(int(e.id), e.event, e.data) for e in events]


def _after(point: str, events: list[Event]) -> int:
    """The last id a client standing at ``point`` of this finished run has seen."""
    last = int(events[-1].id)
    ids = {"before start": 0, "middle": int(events[2].id), "at end": last, "past end": last + 100}
    return ids[point]


# the native door ---------------------------------------------------------------------------


@pytest.mark.parametrize("point", POINTS)
async def test_a_native_resume_of_a_finished_run_ends_at_once_wherever_the_client_stands(
    live: Live, scripted: ScriptedProvider, point: str
) -> None:
    scripted.enqueue([{"text": ["a ", "b ", "c"]}])
    async with live.client() as http:
        cid = await _conversation(http)
        url = f"/api/conversations/{cid}/messages"
        _, seen = await collect(http, "POST", url, json_body={"content": "x"})
        events = seen[:-1]
        after = _after(point, events)
        rest = await _resume(http, events[0].data["run_id"], after)
    expected = [e for e in events if int(e.id) > after] or events[-1:]  # at or past: the end
    assert _wire(rest) == _wire(expected)


@pytest.mark.parametrize("point", ["before start", "middle"])
async def test_a_native_resume_of_a_running_run_follows_it_to_the_end(
    live: Live, scripted: ScriptedProvider, point: str
) -> None:
    scripted.enqueue([{"text": "a "}, {"wait": "go"}, {"text": "b"}])
    async with live.client() as http:
        cid = await _conversation(http)
        url = f"/api/conversations/{cid}/messages"
        _, seen = await collect(http, "POST", url, json_body={"content": "x"}, stop_after="content")
        after = 0 if point == "before start" else int(seen[-1].id)
        resumed = asyncio.create_task(_resume(http, seen[0].data["run_id"], after))
        scripted.release("go")
        rest = await resumed
    assert _wire(rest)[: len(seen) - after] == _wire(seen)[after:]
    assert kinds(rest)[-2:] == ["content", "done"]
    ids = [int(e.id) for e in rest]
    assert ids == sorted(set(ids)) and ids[0] > after


# the Vercel door ---------------------------------------------------------------------------


@pytest.mark.parametrize("point", ["before start", "middle"])
async def test_a_vercel_resume_of_a_running_run_replays_it_to_the_end(
    live: Live, scripted: ScriptedProvider, point: str
) -> None:
    if point == "before start":
        scripted.enqueue([{"wait": "go"}, {"text": "one two"}])
    else:
        scripted.enqueue([{"text": "one "}, {"wait": "go"}, {"text": "two"}])
    async with live.client() as http:
        until = "start" if point == "before start" else "text-delta"
        _, partial = await ui(http, body(user_message("x")), until=until)
        replay = await _follow_chat(http, "chat-1", scripted)
    assert replay[0] == partial[0]
    assert "".join(c["delta"] for c in replay[:-1] if c["type"] == "text-delta") == "one two"
    assert types(replay)[-2:] == ["finish", "[DONE]"]


@pytest.mark.parametrize("point", ["at end", "past end"])
async def test_a_vercel_resume_of_a_finished_run_is_204_at_once(
    live: Live, scripted: ScriptedProvider, point: str
) -> None:
    scripted.enqueue([{"text": "one two"}])
    headers = {"Last-Event-ID": "1000"} if point == "past end" else None
    async with live.client() as http:
        _, chunks = await ui(http, body(user_message("x")))
        assert types(chunks)[-2:] == ["finish", "[DONE]"]
        response, _ = await _resume_chat(http, "chat-1", headers)
    assert response.status_code == 204


# after a restart ---------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def _app(
    tmp_path: Path, database_url: str, overrides: dict[str, Any], scripted: ScriptedProvider
) -> AsyncIterator[Live]:
    settings = make_settings(tmp_path, database_url, **overrides)
    tools = ToolRegistry()
    weather_tool(tools)
    async with contextlib.aclosing(serve(settings, scripted, tools)) as apps:
        yield await anext(apps)


async def test_ids_go_on_after_a_restart_and_every_door_ends(
    tmp_path: Path,
    sqlite_url: str,
    settings_overrides: dict[str, Any],
    scripted: ScriptedProvider,
) -> None:
    scripted.enqueue([WEATHER_CALL], [{"text": "It is 21C."}])
    async with (
        _app(tmp_path, sqlite_url, settings_overrides, scripted) as first,
        first.client() as http,
    ):
        cid = await _conversation(http)
        url = f"/api/conversations/{cid}/messages"
        _, seen = await collect(
            http, "POST", url, json_body={"content": "weather?"}, stop_after="awaiting_input"
        )
    run_id, suspended = seen[0].data["run_id"], int(seen[-1].id)

    async with (
        _app(tmp_path, sqlite_url, settings_overrides, scripted) as second,
        second.client() as http,
    ):
        resumed = asyncio.create_task(_resume(http, run_id, suspended))
        answer = await http.post(f"/api/runs/{run_id}/approvals/call_1", json={"approved": True})
        assert answer.status_code == 200, answer.text
        rest = await resumed
        last = int(rest[-1].id)
        at_end = await _resume(http, run_id, last)
        past_end = await _resume(http, run_id, last + 100)
        from_start = await _resume(http, run_id, 0)
        chat, _ = await _resume_chat(http, cid)
    assert kinds(rest)[-2:] == ["content", "done"], kinds(rest)
    ids = [int(e.id) for e in rest]
    assert ids == sorted(set(ids)) and ids[0] > suspended, (suspended, ids)
    assert _wire(at_end) == _wire(past_end) == _wire(rest[-1:])
    assert _wire(from_start)[-len(rest) :] == _wire(rest)
    assert chat.status_code == 204
