"""Provider faults through every door (issue 11, item 4).

parley runs with its real OpenAI-compatible provider pointed at :class:`FakeOpenAI` (or at a
port that refuses connections), with a 1 s timeout and one retry. Each fault of the table goes
through each door, and every case proves the same four things:

* the door ends cleanly with an error in its own format (protocols.md; DESIGN.md section 3), or,
  for the faults parley absorbs (a tool call with broken JSON, a 10 MB reply), completes;
* the partial reply the client saw is the one stored, with ``status=error`` and the error;
* the run is finished, not left ``running``;
* nothing leaks: the fake has no response in flight, the run's task is gone.

A 429 or 500 before the first chunk is retried by the provider, so those faults fail every
request and the test counts the requests (the first and ``max_retries``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from tests.conftest import Live, make_settings, token
from tests.fakes import openai_server as api
from tests.fakes.openai_server import FakeOpenAI
from tests.support.sse import Event, collect
from tests.support.wait import until
from websockets.asyncio.client import connect

from parley.api.routes.todo_chat import PROVIDER_FAILURE
from parley.app import create_app
from parley.config import Settings
from parley.providers.http import LOST_MID_STREAM
from parley.providers.scripted import ScriptedProvider

PROMPT = "hi"
TIMEOUT = 1.0  # the provider's: a stall ends after this (shorter ones misfire on a loaded machine)
MAX_RETRIES = 1
TEN_MB = [chr(ord("a") + i % 26) * 65_536 for i in range(160)]  # 160 chunks of 64 KiB


# the doors ---------------------------------------------------------------------------------


@dataclass
class Seen:
    """What one door showed its client."""

    run_id: str
    text: str
    error: str | None  # the error message, when the door ended with its error event
    code: str | None = None  # the error code, in doors whose format carries one
    completed: bool = False  # the door's own "finished" marker
    carries_partial: bool = True  # False: an error reply with no room for the text before it
    plain_words: bool = False  # True: the upstream's text is kept for the log, not shown


Door = Callable[[Live], Awaitable[Seen]]


async def _lines(response: httpx.Response) -> list[Any]:
    """The ``data:`` payloads of a data-only stream; any other field line fails the test."""
    payloads: list[Any] = []
    async for line in response.aiter_lines():
        if not line or line.startswith(":"):
            continue
        assert line.startswith("data: "), f"a data-only stream sent {line[:80]!r}"
        raw = line.removeprefix("data: ")
        payloads.append(raw if raw == "[DONE]" else json.loads(raw))
    return payloads


def _terminal(events: list[Event], kinds: set[str]) -> Event:
    """The one terminal event, which must be the last one (``[DONE]`` aside)."""
    ends = [e for e in events if e.data != "[DONE]" and e.data["type"] in kinds]
    assert len(ends) == 1, [e.data for e in ends]
    rest = [e for e in events if e.data != "[DONE]"]
    assert rest[-1] is ends[0], "events after the terminal one"
    return ends[0]


async def native(live: Live) -> Seen:
    async with live.client() as http:
        cid = (await http.post("/api/conversations", json={})).json()["id"]
        url = f"/api/conversations/{cid}/messages"
        response, events = await collect(http, "POST", url, json_body={"content": PROMPT})
    assert response.status_code == 200, response.text
    assert events[0].event == "start" and events[-1].data == "[DONE]"
    end = _terminal(events, {"done", "error"})
    assert end.event == end.data["type"] and end.id, "native events carry id: and event:"
    text = "".join(e.data["content"] for e in events if e.event == "content")
    seen = Seen(response.headers["x-run-id"], text, None, completed=end.event == "done")
    if end.event == "error":
        seen.code, seen.error = end.data["error"]["code"], end.data["error"]["message"]
    return seen


async def vercel(live: Live) -> Seen:
    message = {"id": "u1", "role": "user", "parts": [{"type": "text", "text": PROMPT}]}
    body = {"id": "chat-faults", "messages": [message], "trigger": "submit-message"}
    async with live.client() as http, http.stream("POST", "/api/chat", json=body) as response:
        assert response.status_code == 200
        assert response.headers["x-vercel-ai-ui-message-stream"] == "v1"
        chunks = await _lines(response)
    assert chunks[0]["type"] == "start" and chunks[-1] == "[DONE]"
    last = chunks[-2]
    assert [c["type"] for c in chunks[:-1]].count(last["type"]) == 1
    assert last["type"] in ("finish", "error"), last
    if last["type"] == "error":
        assert set(last) == {"type", "errorText"}  # strict 5.x/6.x clients accept no other key
    text = "".join(c["delta"] for c in chunks[:-1] if c["type"] == "text-delta")
    seen = Seen(response.headers["x-run-id"], text, None, completed=last["type"] == "finish")
    seen.error = last.get("errorText")
    return seen


OPENAI_BODY = {"model": "profile/generalist", "messages": [{"role": "user", "content": PROMPT}]}


def _openai_error(body: dict[str, Any]) -> dict[str, Any]:
    error: dict[str, Any] = body["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    return error


async def openai_stream(live: Live) -> Seen:
    body = {**OPENAI_BODY, "stream": True}
    async with (
        live.client() as http,
        http.stream("POST", "/v1/chat/completions", json=body) as response,
    ):
        assert response.status_code == 200
        chunks = await _lines(response)
    assert chunks[-1] == "[DONE]"
    last = chunks[-2]
    text = "".join(
        c["choices"][0]["delta"].get("content") or "" for c in chunks[:-1] if c.get("choices")
    )
    seen = Seen(response.headers["x-run-id"], text, None)
    if "error" in last:
        error = _openai_error(last)
        seen.code, seen.error = error["code"], error["message"]
        assert all("error" not in c for c in chunks[:-2])
    else:
        seen.completed = last["choices"][0]["finish_reason"] == "stop"
    return seen


async def openai_json(live: Live) -> Seen:
    async with live.client() as http:
        response = await http.post("/v1/chat/completions", json=OPENAI_BODY)
    body = response.json()
    seen = Seen(response.headers["x-run-id"], "", None)
    if response.status_code == 200:
        seen.text = body["choices"][0]["message"]["content"] or ""
        seen.completed = body["choices"][0]["finish_reason"] == "stop"
        return seen
    assert response.status_code in (502, 503, 504), response.status_code
    seen.carries_partial = False  # OpenAI's error body has no content: the text is stored only
    error = _openai_error(body)
    assert error["type"] == "server_error"
    seen.code, seen.error = error["code"], error["message"]
    return seen


async def sessions(live: Live) -> Seen:
    async with live.client() as http:
        sid = (await http.post("/sessions", json={})).json()["session_id"]
        url = f"/sessions/{sid}/chat"
        response, events = await collect(http, "POST", url, json_body={"message": PROMPT})
    assert response.status_code == 200
    assert all(e.event == e.data["type"] for e in events), "named events, no [DONE]"
    end = _terminal(events, {"complete", "error"})
    text = "".join(e.data["content"] for e in events if e.event == "chunk")
    seen = Seen(response.headers["x-run-id"], text, None, completed=end.event == "complete")
    if end.event == "error":
        assert end.data["error"]["code"] == "AI_ERROR"  # the seed's code for a failed turn
        seen.error = end.data["error"]["message"]
    return seen


async def todo(live: Live) -> Seen:
    headers = {"Accept": "text/event-stream"}
    async with live.client() as http:
        response, events = await collect(
            http, "POST", "/api/alice/chat", json_body={"message": PROMPT}, headers=headers
        )
    assert response.status_code == 200
    assert all(e.event == "message" and e.data != "[DONE]" for e in events), "data: lines only"
    end = _terminal(events, {"done", "error"})
    text = "".join(e.data["content"] for e in events if e.data["type"] == "chunk")
    seen = Seen(response.headers["x-run-id"], text, None, completed=end.data["type"] == "done")
    if end.data["type"] == "error":  # {"type": "error", "error": "<message>", "code"}
        seen.code, seen.error, seen.plain_words = end.data["code"], end.data["error"], True
    return seen


async def progress_socket(live: Live) -> Seen:
    url = live.url.replace("http://", "ws://") + f"/ws/alice/chat?token={token('alice')}"
    async with connect(url, max_size=None) as ws:
        assert json.loads(await ws.recv())["event_type"] == "connection_established"
        await ws.send(json.dumps({"type": "message", "content": PROMPT}))
        messages = [json.loads(await ws.recv())]
        while messages[-1]["event_type"] != "agent_done":
            messages.append(json.loads(await ws.recv()))
    done = messages[-1]
    seen = Seen(done["run_id"], done["result"], None, completed=done["error"] is None)
    if done["error"] is not None:
        seen.code, seen.error = done["error"]["code"], done["error"]["message"]
    return seen


DOORS: dict[str, Door] = {
    "native": native,
    "vercel": vercel,
    "openai-stream": openai_stream,
    "openai-json": openai_json,
    "sessions": sessions,
    "todo": todo,
    "ws": progress_socket,
}


# the faults --------------------------------------------------------------------------------


@dataclass
class Fault:
    """A misbehaving upstream and what parley must make of it."""

    scenarios: list[api.Scenario] = field(default_factory=list)
    every_time: api.Scenario | None = None  # the answer to every request (retries included)
    refused: bool = False
    code: str | None = None  # None: the run completes
    message: str = ""
    partial: str = ""  # the text before the fault: shown, then stored
    requests: int = 1


FAULTS: dict[str, Fault] = {
    "refused": Fault(
        refused=True,
        code="ERR_PROVIDER_UNAVAILABLE",
        message="cannot reach openai",
        requests=0,
    ),
    "http-500": Fault(
        every_time=api.error(500, "boom", type="server_error"),
        code="ERR_PROVIDER_UNAVAILABLE",
        message="openai answered HTTP 500: boom",
        requests=1 + MAX_RETRIES,
    ),
    "http-429": Fault(
        every_time=api.error(429, "slow down", headers={"retry-after": "0"}),
        code="ERR_PROVIDER_UNAVAILABLE",
        message="openai answered HTTP 429: slow down",
        requests=1 + MAX_RETRIES,
    ),
    "stall-before-first-byte": Fault(
        scenarios=[api.hang()],
        code="ERR_TIMEOUT",
        message=f"openai was silent for {TIMEOUT:g}s before answering",
    ),
    "stall-mid-stream": Fault(
        scenarios=[api.sse(*api.text_deltas("Hel", "lo"), api.Hang(), done=False)],
        code="ERR_TIMEOUT",
        message=f"openai was silent for {TIMEOUT:g}s mid-stream",
        partial="Hello",
    ),
    "malformed-chunk": Fault(
        scenarios=[api.malformed(*api.text_deltas("Hel", "lo"))],
        code="ERR_PROVIDER_UNAVAILABLE",
        message="openai sent a malformed stream",
        partial="Hello",
    ),
    "truncated-without-done": Fault(
        scenarios=[api.sse(*api.text_deltas("Hel", "lo"), done=False)],
        code="ERR_PROVIDER_UNAVAILABLE",
        message=LOST_MID_STREAM,
        partial="Hello",
    ),
    "tool-call-with-invalid-json": Fault(
        scenarios=[
            api.tool_calls(("call_bad", "add_task", ['{"title": ', '"milk'])),
            api.text("Sorry, ", "try again."),
        ],
        partial="Sorry, try again.",
        requests=2,
    ),
    "10-mb-reply": Fault(scenarios=[api.text(*TEN_MB)], partial="".join(TEN_MB)),
}


# running parley with its real provider -----------------------------------------------------


@contextlib.contextmanager
def _refusing_port() -> Any:
    """A bound socket that does not listen: connections to it are refused."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{closed.getsockname()[1]}/v1"


def _settings(tmp_path: Path, sqlite_url: str, base_url: str) -> Settings:
    provider = {
        "type": "openai",
        "base_url": base_url,
        "api_key": "sk-fake",
        "timeout": TIMEOUT,
        "max_retries": MAX_RETRIES,
    }
    return make_settings(
        tmp_path, sqlite_url, provider="openai", model="fake-model", providers={"openai": provider}
    )


@contextlib.asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[Live]:
    """parley on a loopback port with the providers and tools its settings name."""
    app = create_app(settings)
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    await until(lambda: server.started or task.done(), timeout=10)
    if task.done():
        task.result()
    port = server.servers[0].sockets[0].getsockname()[1]
    live = Live(f"http://127.0.0.1:{port}", app, ScriptedProvider(turns=[]), tools=None)  # type: ignore[arg-type]
    try:
        yield live
    finally:
        server.should_exit = True
        await task


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as server:
        yield server


# the table ---------------------------------------------------------------------------------


@pytest.mark.parametrize("door", list(DOORS))
@pytest.mark.parametrize("fault", list(FAULTS))
async def test_a_provider_fault_ends_the_run_cleanly_in_the_doors_own_format(
    fault: str, door: str, fake: FakeOpenAI, tmp_path: Path, sqlite_url: str
) -> None:
    case = FAULTS[fault]
    fake.enqueue(*case.scenarios)
    fake.default = case.every_time
    with _refusing_port() as refused:
        base_url = refused if case.refused else fake.base_url
        async with serving(_settings(tmp_path, sqlite_url, base_url)) as live:
            async with asyncio.timeout(20):
                seen = await DOORS[door](live)
            await _assert_outcome(live, case, seen)
            await _assert_nothing_leaked(live, fake, seen.run_id)
    assert len(fake.exchanges) == case.requests
    fake.assert_done()


async def _assert_outcome(live: Live, case: Fault, seen: Seen) -> None:
    store = live.services.store
    run = await store.get_run("alice", seen.run_id)
    message = await store.get_message("alice", run.conversation_id, run.message_id)
    assert message.text == case.partial
    assert seen.text == (case.partial if seen.carries_partial else "")
    if case.code is None:
        assert seen.completed and seen.error is None
        assert (run.status, message.status, message.error) == ("complete", "complete", None)
        return
    assert not seen.completed
    assert seen.code in (None, case.code)
    assert (run.status, message.status) == ("error", "error")
    if seen.plain_words:
        assert seen.error == PROVIDER_FAILURE
        assert message.error is not None and message.error["code"] == case.code
        assert message.error["message"].startswith(case.message), message.error
        return
    assert seen.error is not None and seen.error.startswith(case.message), seen.error
    assert message.error == {"code": case.code, "message": seen.error}


async def _assert_nothing_leaked(live: Live, fake: FakeOpenAI, run_id: str) -> None:
    def run_tasks() -> list[asyncio.Task[Any]]:
        return [t for t in asyncio.all_tasks() if t.get_name() == f"run {run_id}"]

    await until(lambda: fake.active == 0 and not run_tasks(), timeout=5)
    assert live.services.runs.local_run_ids() == []


# what the table does not show ----------------------------------------------------------------


async def test_a_429_is_retried_no_sooner_than_its_retry_after(
    fake: FakeOpenAI, tmp_path: Path, sqlite_url: str
) -> None:
    fake.enqueue(api.error(429, "slow down", headers={"retry-after": "1"}), api.text("ok"))
    async with serving(_settings(tmp_path, sqlite_url, fake.base_url)) as live:
        seen = await native(live)
    assert seen.completed and seen.text == "ok"
    first, second = fake.exchanges
    assert second.at - first.at >= 1.0  # the backoff alone would wait at most 0.5 s


async def test_a_tool_call_with_invalid_json_is_audited_and_never_runs(
    fake: FakeOpenAI, tmp_path: Path, sqlite_url: str
) -> None:
    fake.enqueue(*FAULTS["tool-call-with-invalid-json"].scenarios)
    async with serving(_settings(tmp_path, sqlite_url, fake.base_url)) as live:
        seen = await native(live)
        store = live.services.store
        run = await store.get_run("alice", seen.run_id)
        [row] = await store.list_tool_calls("alice", run.conversation_id)
        tasks = await store.list_tasks("alice")
    assert (row.tool_name, row.status) == ("add_task", "failed")
    assert row.error == "the arguments are not valid JSON"
    assert tasks == []
    told = fake.requests[1]["messages"][-1]
    assert told == {
        "role": "tool",
        "tool_call_id": "call_bad",
        "content": "Error: the arguments are not valid JSON",
    }


async def test_the_openai_door_hands_back_broken_tool_arguments_as_the_model_wrote_them(
    fake: FakeOpenAI, tmp_path: Path, sqlite_url: str
) -> None:
    """The client runs its own tools: it gets the model's text, streamed or not, never
    parley's internal marker for arguments that are not JSON."""
    broken = api.tool_calls(("call_bad", "get_weather", ['{"city": ', '"Par']))
    fake.enqueue(broken, broken)
    weather = {"type": "function", "function": {"name": "get_weather", "parameters": {}}}
    body = {"model": "openai/fake-model", "messages": OPENAI_BODY["messages"], "tools": [weather]}
    settings = _settings(tmp_path, sqlite_url, fake.base_url)
    async with serving(settings) as live, live.client() as http:
        whole = (await http.post("/v1/chat/completions", json=body)).json()
        stream = {**body, "stream": True}
        async with http.stream("POST", "/v1/chat/completions", json=stream) as response:
            chunks = await _lines(response)
    [call] = whole["choices"][0]["message"]["tool_calls"]
    assert call["function"]["arguments"] == '{"city": "Par'
    streamed = [
        piece["function"]["arguments"]
        for c in chunks[:-1]
        for piece in c["choices"][0]["delta"].get("tool_calls", [])
    ]
    assert "".join(streamed) == '{"city": "Par'
