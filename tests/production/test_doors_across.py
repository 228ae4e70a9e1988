"""Every door across two processes on one PostgreSQL and Redis (issue 27): a reply started
through a door on process A is resumed on process B with that door's own resume and gets the
rest with no gap and no duplicate, to its end; a cancel sent to B stops the model running on A
(the fake model's response is cut off), A's stream ends in the door's own format, and the
stored reply is ``cancelled``.

How each door resumes:

- native SSE, and EditorChat's unnamed events: ``GET /api/runs/{id}/events`` with
  ``Last-Event-ID``; a browser ``EventSource``: the same with a ``?ticket=`` that A issued;
- the Vercel AI SDK 5+ (``POST /api/chat``; the playground's ``POST /mcp/chat-v2``):
  ``GET .../{chat id}/stream``, which replays the active run from its start (the client
  starts a fresh assistant message); ai@4 on the playground: ``GET /mcp/chat-v2?chatId=``, the
  same in the Data Stream protocol;
- the OpenAI Responses API: ``GET /v1/responses/{id}?stream=true&starting_after=<n>``.

How each door cancels: ``POST /v1/responses/{id}/cancel`` on the Responses door; every other
door has no cancel of its own (a Vercel ``stop()`` or a ChatKit cancel only drops the
connection, which leaves a parley run going), so its client cancels with parley's ``POST
/api/runs/{id}/cancel``, the run named by the response's ``X-Run-Id``, walked here for each.

No resume in their protocols: OpenAI Chat Completions (a client sends the request again),
AG-UI (an agent runs again), session chat and the todo assistant (their events carry no id),
and ChatKit (a thread reloads its items). The progress socket's resume on either process is in
``test_progress_socket_pair.py``; here a run it started on A is cancelled from B.

Two processes take seconds to start: one pair (conftest's ``pair``, with the playground
mounted) serves the whole module, each test with its own conversation and fake exchange.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import pytest_asyncio
from tests.conftest import auth, token
from tests.fakes.openai_server import FakeOpenAI, paced
from tests.production.conftest import started_pair
from tests.support.processes import ParleyProcess
from tests.support.wait import until
from websockets.asyncio.client import connect

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.slow,
    pytest.mark.asyncio(loop_scope="module"),
]

RESUMED = 60  # text chunks of a reply that is resumed, one every PACE_MS
CANCELLED = 500  # ... of one that is cancelled (15 s if nothing stops it)
PACE_MS = 30
SEEN = 5  # text frames A's client reads before it goes away
MODEL = "openai/fake-model"


@dataclass
class Pair:
    a: ParleyProcess
    b: ParleyProcess
    fake: FakeOpenAI


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def walk(
    postgres_migrated: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Pair]:
    """conftest's ``pair`` and ``fake``, once for the module, with ``ENABLE_CHAT_V2``."""
    tmp_path = tmp_path_factory.mktemp("doors")
    async with (
        FakeOpenAI() as fake,
        started_pair(postgres_migrated, fake, tmp_path, {"ENABLE_CHAT_V2": "true"}) as (a, b),
    ):
        yield Pair(a, b, fake)


def client(process: ParleyProcess, *, signed_in: bool = True) -> httpx.AsyncClient:
    headers = auth("alice") if signed_in else {}
    return httpx.AsyncClient(base_url=process.url, headers=headers, timeout=20)


# reading each wire format ------------------------------------------------------------------


@dataclass
class Frame:
    id: str | None
    kind: str  # the SSE event name, else the JSON's type or object; ai@4's part code
    data: Any  # JSON, or "[DONE]"


def _kind(event: str | None, data: Any) -> str:
    if data == "[DONE]":
        return "[DONE]"
    if isinstance(data, dict) and isinstance(data.get("type"), str):
        return str(data["type"])
    if event:
        return event
    return str(data.get("object")) if isinstance(data, dict) else ""


async def frames(response: httpx.Response) -> AsyncIterator[Frame]:
    """A response's events: SSE (comments left out), or ai@4's ``CODE:JSON`` lines."""
    if not response.headers["content-type"].startswith("text/event-stream"):
        async for line in response.aiter_lines():
            if line:
                code, _, value = line.partition(":")
                yield Frame(None, code, json.loads(value))
        return
    fields: dict[str, str] = {}
    async for line in response.aiter_lines():
        if line.startswith(":"):
            continue
        if line:
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
            continue
        if "data" in fields:
            data = fields["data"] if fields["data"] == "[DONE]" else json.loads(fields["data"])
            yield Frame(fields.get("id"), _kind(fields.get("event"), data), data)
        fields = {}


async def read(http: httpx.AsyncClient, url: str, headers: dict[str, str]) -> list[Frame]:
    async with http.stream("GET", url, headers=headers) as response:
        assert response.status_code == 200, (url, response.status_code, await response.aread())
        return [frame async for frame in frames(response)]


# the doors ---------------------------------------------------------------------------------


@dataclass
class Sent:
    """A request that starts a reply on A; ``key`` is the client's chat id, if it has one."""

    url: str
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    key: str = ""


Resume = Callable[
    [httpx.AsyncClient, str, str, Frame | None], Awaitable[tuple[str, dict[str, str]]]
]


@dataclass(frozen=True)
class Door:
    name: str
    send: Callable[[httpx.AsyncClient], Awaitable[Sent]]
    text: Callable[[Frame], str] = lambda f: ""
    ends: tuple[str, ...] = ()  # the kinds of a finished stream's last frames
    stopped: tuple[str, ...] = ()  # ... of a cancelled one's, when they differ
    resume: Resume | None = None  # on B, after a frame (None: from the start)
    replays: bool = False  # the resume replays the run from its start
    same: Callable[[Frame], Any] = lambda f: (f.id, f.kind, f.data)  # what a replay repeats
    number: Callable[[Frame], int] | None = None  # a frame's number, when they count up by one
    cancel_route: str = "/api/runs/{run_id}/cancel"


async def native(http: httpx.AsyncClient, **extra: Any) -> Sent:
    cid = (await http.post("/api/conversations", json={})).json()["id"]
    return Sent(f"/api/conversations/{cid}/messages", {"content": "go", **extra})


async def editorchat(http: httpx.AsyncClient) -> Sent:
    return await native(http, enableStreaming=True)


def chat(url: str, *, v4: bool = False) -> Callable[[httpx.AsyncClient], Awaitable[Sent]]:
    """A ``useChat`` sending its first message: ai@4's body, or a ``UIMessage`` one."""

    async def send(http: httpx.AsyncClient) -> Sent:
        key = f"chat-{uuid.uuid4().hex[:12]}"
        if v4:
            return Sent(url, {"id": key, "messages": [{"role": "user", "content": "go"}]}, key=key)
        user = {"id": "u1", "role": "user", "parts": [{"type": "text", "text": "go"}]}
        return Sent(url, {"id": key, "messages": [user], "trigger": "submit-message"}, key=key)

    return send


async def responses(http: httpx.AsyncClient) -> Sent:
    return Sent("/v1/responses", {"model": MODEL, "input": "go", "stream": True})


async def completions(http: httpx.AsyncClient) -> Sent:
    messages = [{"role": "user", "content": "go"}]
    return Sent("/v1/chat/completions", {"model": MODEL, "messages": messages, "stream": True})


async def ag_ui(http: httpx.AsyncClient) -> Sent:
    body = {
        "threadId": f"thread-{uuid.uuid4().hex[:12]}",
        "runId": "r1",
        "messages": [{"id": "m1", "role": "user", "content": "go"}],
        "tools": [],
        "context": [],
        "state": {},
        "forwardedProps": {},
    }
    return Sent("/ag-ui", body)


async def chatkit(http: httpx.AsyncClient) -> Sent:
    message = {
        "content": [{"type": "input_text", "text": "go"}],
        "attachments": [],
        "inference_options": {},
    }
    return Sent("/chatkit", {"type": "threads.create", "params": {"input": message}})


async def sessions(http: httpx.AsyncClient) -> Sent:
    session = (await http.post("/sessions", json={})).json()["session_id"]
    return Sent(f"/sessions/{session}/chat", {"message": "go"})


async def todo(http: httpx.AsyncClient) -> Sent:
    return Sent("/api/alice/chat", {"message": "go"}, {"Accept": "text/event-stream"})


async def by_last_event_id(
    http: httpx.AsyncClient, run_id: str, key: str, after: Frame | None
) -> tuple[str, dict[str, str]]:
    cursor = {"Last-Event-ID": str(after.id)} if after is not None else {}
    return f"/api/runs/{run_id}/events", {**auth("alice"), **cursor}


async def by_ticket(
    http: httpx.AsyncClient, run_id: str, key: str, after: Frame | None
) -> tuple[str, dict[str, str]]:
    """A browser ``EventSource``: a ticket from A, no ``Authorization``."""
    ticket = (await http.post(f"/api/runs/{run_id}/ticket")).json()["ticket"]
    cursor = {"Last-Event-ID": str(after.id)} if after is not None else {}
    return f"/api/runs/{run_id}/events?ticket={ticket}", cursor


def by_chat_id(template: str) -> Resume:
    async def resume(
        http: httpx.AsyncClient, run_id: str, key: str, after: Frame | None
    ) -> tuple[str, dict[str, str]]:
        return template.format(key=key), auth("alice")

    return resume


async def by_sequence_number(
    http: httpx.AsyncClient, run_id: str, key: str, after: Frame | None
) -> tuple[str, dict[str, str]]:
    response = "resp_" + run_id.removeprefix("run_")
    cursor = f"&starting_after={after.data['sequence_number']}" if after is not None else ""
    return f"/v1/responses/{response}?stream=true{cursor}", auth("alice")


def content(f: Frame) -> str:
    return str(f.data["content"]) if f.kind == "content" else ""


def ui_delta(f: Frame) -> str:
    return str(f.data["delta"]) if f.kind == "text-delta" else ""


NATIVE = Door("native", native, content, ("done", "[DONE]"), resume=by_last_event_id)
EDITORCHAT = Door("editorchat", editorchat, content, ("done", "[DONE]"), resume=by_last_event_id)
TICKET = Door("eventsource-ticket", native, content, ("done", "[DONE]"), resume=by_ticket)
VERCEL = Door(
    "vercel",
    chat("/api/chat"),
    ui_delta,
    ("finish", "[DONE]"),
    resume=by_chat_id("/api/chat/{key}/stream"),
    replays=True,
)
PLAYGROUND = Door(
    "playground",
    chat("/mcp/chat-v2"),
    ui_delta,
    ("finish", "[DONE]"),
    resume=by_chat_id("/mcp/chat-v2/{key}/stream"),
    replays=True,
)
AI4 = Door(
    "ai4",
    chat("/mcp/chat-v2", v4=True),
    lambda f: str(f.data) if f.kind == "0" else "",
    ("e", "d"),
    resume=by_chat_id("/mcp/chat-v2?chatId={key}"),
    replays=True,
)
RESPONSES = Door(
    "responses",
    responses,
    lambda f: str(f.data["delta"]) if f.kind == "response.output_text.delta" else "",
    ("response.completed",),
    ("response.incomplete",),
    resume=by_sequence_number,
    # the response object a replay echoes is the stored run's, not the request's
    same=lambda f: (f.data["sequence_number"], f.kind, f.data.get("delta")),
    number=lambda f: int(f.data["sequence_number"]),
    cancel_route="/v1/responses/resp_{suffix}/cancel",
)
NO_RESUME = [
    Door("chat-completions", completions, ends=("[DONE]",)),
    Door("ag-ui", ag_ui, ends=("RUN_FINISHED",)),
    Door("chatkit", chatkit, ends=("thread.item.done",)),
    Door("sessions", sessions, ends=("complete",)),
    Door("todo", todo, ends=("done",)),
]
RESUMABLE = [NATIVE, EDITORCHAT, TICKET, VERCEL, PLAYGROUND, AI4, RESPONSES]
CANCELLABLE = [NATIVE, EDITORCHAT, VERCEL, PLAYGROUND, AI4, RESPONSES, *NO_RESUME]


def named(doors: list[Door]) -> pytest.MarkDecorator:
    return pytest.mark.parametrize("door", doors, ids=[d.name for d in doors])


# resume ------------------------------------------------------------------------------------


@named(RESUMABLE)
async def test_a_reply_started_on_a_is_resumed_on_b_to_its_end(walk: Pair, door: Door) -> None:
    assert door.resume is not None
    walk.fake.enqueue(paced(RESUMED, PACE_MS))
    async with client(walk.a) as on_a, client(walk.b, signed_in=False) as on_b:
        sent = await door.send(on_a)
        seen: list[Frame] = []
        async with on_a.stream("POST", sent.url, json=sent.body, headers=sent.headers) as response:
            assert response.status_code == 200, await response.aread()
            run_id = response.headers["x-run-id"]
            async for frame in frames(response):
                seen.append(frame)
                if sum(1 for f in seen if door.text(f)) == SEEN:
                    break  # A's client goes away mid-reply
        after = None if door.replays else seen[-1]
        rest = await read(on_b, *await door.resume(on_a, run_id, sent.key, after))
        whole = (
            rest if door.replays else await read(on_b, *await door.resume(on_a, run_id, "", None))
        )
    told = rest if door.replays else seen + rest
    assert "".join(map(door.text, told)) == "x" * RESUMED
    assert [door.same(f) for f in seen] == [door.same(f) for f in told[: len(seen)]]
    assert [door.same(f) for f in told] == [door.same(f) for f in whole]
    assert [f.kind for f in told[-len(door.ends) :]] == list(door.ends)
    if door.number is not None:  # A numbered the frames it sent, B went on from there
        assert [door.number(f) for f in told] == list(range(len(told)))


# cancel ------------------------------------------------------------------------------------


async def everything(response: httpx.Response) -> list[Frame]:
    return [frame async for frame in frames(response)]


async def cancel_from(http: httpx.AsyncClient, door: Door, run_id: str) -> str:
    route = door.cancel_route.format(run_id=run_id, suffix=run_id.removeprefix("run_"))
    answer = await http.post(route)
    assert answer.status_code == 200, answer.text
    return str(answer.json()["status"])


async def stored_reply(http: httpx.AsyncClient, run_id: str) -> dict[str, Any]:
    run = (await http.get(f"/api/runs/{run_id}")).json()
    convo = (await http.get(f"/api/conversations/{run['conversation_id']}")).json()
    found: dict[str, Any] = next(m for m in convo["messages"] if m["id"] == run["message_id"])
    return found


def stored_text(message: dict[str, Any]) -> str:
    return "".join(p.get("text", "") for p in message["parts"] if p.get("type") == "text")


async def model_streaming(fake: FakeOpenAI, exchange: int) -> None:
    await until(
        lambda: len(fake.exchanges) > exchange and fake.exchanges[exchange].frames_sent >= 3
    )


@named(CANCELLABLE)
async def test_a_cancel_sent_to_b_stops_the_model_running_on_a(walk: Pair, door: Door) -> None:
    fake, exchange = walk.fake, len(walk.fake.exchanges)
    fake.enqueue(paced(CANCELLED, PACE_MS))
    async with client(walk.a) as on_a, client(walk.b) as on_b:
        sent = await door.send(on_a)
        async with on_a.stream("POST", sent.url, json=sent.body, headers=sent.headers) as response:
            assert response.status_code == 200, await response.aread()
            run_id = response.headers["x-run-id"]
            reading = asyncio.create_task(everything(response))
            await model_streaming(fake, exchange)
            status = await cancel_from(on_b, door, run_id)
            await until(lambda: fake.exchanges[exchange].cut_off, timeout=5)
            told = await asyncio.wait_for(reading, 10)
        reply = await stored_reply(on_b, run_id)
    assert status == "cancelled"
    ends = door.stopped or door.ends
    assert [f.kind for f in told[-len(ends) :]] == list(ends), [f.kind for f in told]
    assert reply["status"] == "cancelled"
    assert 0 < len(stored_text(reply)) < CANCELLED


async def test_a_run_the_progress_socket_started_on_a_is_cancelled_from_b(walk: Pair) -> None:
    fake, exchange = walk.fake, len(walk.fake.exchanges)
    fake.enqueue(paced(CANCELLED, PACE_MS))
    url = f"{walk.a.url.replace('http://', 'ws://')}/ws/alice/chat?token={token('alice')}"
    async with connect(url) as ws, client(walk.b) as on_b:

        async def receive() -> dict[str, Any]:
            async with asyncio.timeout(10):
                message: dict[str, Any] = json.loads(await ws.recv())
            return message

        assert (await receive())["event_type"] == "connection_established"
        await ws.send(json.dumps({"type": "message", "content": "go"}))
        thinking = await receive()
        await model_streaming(fake, exchange)
        status = await cancel_from(on_b, NATIVE, thinking["run_id"])
        await until(lambda: fake.exchanges[exchange].cut_off, timeout=5)
        done = await receive()
        while done["event_type"] != "agent_done":
            done = await receive()
        reply = await stored_reply(on_b, thinking["run_id"])
    assert (thinking["event_type"], status) == ("agent_thinking", "cancelled")
    assert reply["status"] == "cancelled"
    assert done["response"] == stored_text(reply) and 0 < len(done["response"]) < CANCELLED
