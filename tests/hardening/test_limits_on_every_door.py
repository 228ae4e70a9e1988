"""One table of limits, held by every door: a message over the character limit, too many or too
big attachments, a body over the size limit. Each door refuses in its own error shape, writes
nothing (no conversation, message or run) and never asks the model; a message at the limit
goes through.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from tests.conftest import Live, token
from websockets.asyncio.client import ClientConnection, connect

from parley.store.tables import Conversation, Message, Run

CHARS = 1_000
BODY_BYTES = 8_000
ATTACHMENTS = 2
ATTACHMENT_BYTES = 100

pytestmark = pytest.mark.parametrize(
    "settings_overrides",
    [
        {
            "max_message_chars": CHARS,
            "max_body_bytes": BODY_BYTES,
            "max_attachments": ATTACHMENTS,
            "max_attachment_bytes": ATTACHMENT_BYTES,
            "enable_chat_v2": True,
        }
    ],
)

SMALL_FILE = "aGk="  # "hi"
BIG_FILE = "eHh4" * 50  # 150 bytes


@dataclass
class Outcome:
    """What a door answered: an HTTP status and JSON body, or the socket's message."""

    status: int
    body: Any
    headers: httpx.Headers | None = None


Send = Callable[[Live, str, str, list[str]], Awaitable[Outcome]]


async def _nothing(live: Live) -> str:
    return ""


@dataclass
class Door:
    """``setup`` makes what the door needs first (a conversation, a session) and returns its id;
    ``send(live, that id, text, base64 files)`` sends one message."""

    name: str
    shape: str  # "parley", "todo", "openai" or "socket"
    send: Send
    setup: Callable[[Live], Awaitable[str]] = _nothing
    takes_files: bool = False


async def _post(live: Live, url: str, body: Any) -> Outcome:
    async with live.client() as http:
        response = await http.post(url, json=body)
    try:
        parsed = response.json()
    except ValueError:
        parsed = response.text
    return Outcome(response.status_code, parsed, response.headers)


async def _new_conversation(live: Live) -> str:
    async with live.client() as http:
        cid: str = (await http.post("/api/conversations", json={})).json()["id"]
    return cid


async def _new_session(live: Live) -> str:
    async with live.client() as http:
        sid: str = (await http.post("/sessions", json={})).json()["session_id"]
    return sid


async def _native(live: Live, cid: str, text: str, files: list[str]) -> Outcome:
    attachments = [{"type": "file", "media_type": "text/plain", "data": f} for f in files]
    body = {"content": text, "attachments": attachments, "stream": False}
    return await _post(live, f"/api/conversations/{cid}/messages", body)


async def _sessions(live: Live, sid: str, text: str, files: list[str]) -> Outcome:
    return await _post(live, f"/sessions/{sid}/chat", {"message": text})


async def _todo(live: Live, _: str, text: str, files: list[str]) -> Outcome:
    return await _post(live, "/api/alice/chat", {"message": text})


def _ui_body(text: str, files: list[str]) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [{"type": "text", "text": text}]
    parts += [
        {"type": "file", "mediaType": "text/plain", "url": f"data:text/plain;base64,{f}"}
        for f in files
    ]
    message = {"id": "u1", "role": "user", "parts": parts}
    return {"id": "chat-1", "messages": [message], "trigger": "submit-message"}


async def _vercel(live: Live, _: str, text: str, files: list[str]) -> Outcome:
    return await _post(live, "/api/chat", _ui_body(text, files))


async def _playground(live: Live, _: str, text: str, files: list[str]) -> Outcome:
    return await _post(live, "/mcp/chat-v2", _ui_body(text, files))


def _openai_content(text: str, files: list[str]) -> list[dict[str, Any]]:
    content: list[dict[str, Any]] = [{"type": "text", "text": text}]
    for f in files:
        content.append({"type": "image_url", "image_url": {"url": f"data:image/png;base64,{f}"}})
    return content


async def _openai(live: Live, _: str, text: str, files: list[str]) -> Outcome:
    messages = [{"role": "user", "content": _openai_content(text, files)}]
    return await _post(
        live, "/v1/chat/completions", {"model": "scripted/demo", "messages": messages}
    )


async def _openai_history(live: Live, _: str, text: str, files: list[str]) -> Outcome:
    """The message is an earlier one of the client's history, which parley would store."""
    messages = [
        {"role": "user", "content": _openai_content(text, files)},
        {"role": "assistant", "content": "Noted."},
        {"role": "user", "content": "And now?"},
    ]
    return await _post(
        live, "/v1/chat/completions", {"model": "scripted/demo", "messages": messages}
    )


def _responses_content(text: str, files: list[str]) -> list[dict[str, Any]]:
    content: list[dict[str, Any]] = [{"type": "input_text", "text": text}]
    for f in files:
        content.append({"type": "input_image", "image_url": f"data:image/png;base64,{f}"})
    return content


async def _responses(live: Live, _: str, text: str, files: list[str]) -> Outcome:
    items = [{"role": "user", "content": _responses_content(text, files)}]
    return await _post(live, "/v1/responses", {"model": "scripted/demo", "input": items})


async def _responses_history(live: Live, _: str, text: str, files: list[str]) -> Outcome:
    """The message is an earlier item of the input, which parley would store."""
    items = [
        {"role": "user", "content": _responses_content(text, files)},
        {"role": "assistant", "content": "Noted."},
        {"role": "user", "content": "And now?"},
    ]
    return await _post(live, "/v1/responses", {"model": "scripted/demo", "input": items})


async def _ag_ui(live: Live, _: str, text: str, files: list[str]) -> Outcome:
    content: list[dict[str, Any]] = [{"type": "text", "text": text}]
    for f in files:
        source = {"type": "data", "value": f, "mimeType": "image/png"}
        content.append({"type": "image", "source": source})
    message = {"id": "m1", "role": "user", "content": content}
    return await _post(live, "/ag-ui", {"threadId": "t1", "runId": "r1", "messages": [message]})


async def _receive(ws: ClientConnection) -> dict[str, Any]:
    async with asyncio.timeout(5):
        message: dict[str, Any] = json.loads(await ws.recv())
    return message


async def _socket(live: Live, _: str, text: str, files: list[str]) -> Outcome:
    url = live.url.replace("http://", "ws://") + f"/ws/alice/chat?token={token('alice')}"
    async with connect(url) as ws:
        assert (await _receive(ws))["event_type"] == "connection_established"
        await ws.send(json.dumps({"type": "message", "content": text}))
        answer = await _receive(ws)
        while answer["event_type"] not in ("error", "agent_done"):
            answer = await _receive(ws)
        if answer["event_type"] == "error":
            await ws.send("still there?")  # the socket stays open after a refusal
            assert (await _receive(ws))["event_type"] == "error"
    return Outcome(400 if answer["event_type"] == "error" else 200, answer)


DOORS = [
    Door("native", "parley", _native, _new_conversation, takes_files=True),
    Door("sessions", "parley", _sessions, _new_session),
    Door("todo", "todo", _todo),
    Door("vercel", "parley", _vercel, takes_files=True),
    Door("playground", "parley", _playground, takes_files=True),
    Door("openai", "openai", _openai, takes_files=True),
    Door("openai-history", "openai", _openai_history, takes_files=True),
    Door("responses", "openai", _responses, takes_files=True),
    Door("responses-history", "openai", _responses_history, takes_files=True),
    Door("socket", "socket", _socket),
    Door("ag-ui", "parley", _ag_ui, takes_files=True),
]


async def _stored(live: Live) -> dict[str, int]:
    counts = {}
    async with live.services.store.sessions() as session:
        for table in (Conversation, Message, Run):
            counts[table.__tablename__] = (
                await session.execute(select(func.count()).select_from(table))
            ).scalar_one()
    return counts


def _assert_refused(door: Door, outcome: Outcome, status: int, words: str) -> None:
    label = f"{door.name}: {outcome.status} {str(outcome.body)[:300]}"
    if door.shape == "socket":
        assert outcome.body["event_type"] == "error", label
        assert outcome.body["error"]["code"] == "ERR_VALIDATION", label
        message = outcome.body["error"]["message"]
    elif door.shape == "todo":  # the todo app prints ``data.error``
        assert outcome.status == status, label
        assert set(outcome.body) == {"error"}, label
        assert outcome.headers is not None and outcome.headers["x-error-code"] == "ERR_VALIDATION"
        message = outcome.body["error"]
    elif door.shape == "openai":
        assert outcome.status == status, label
        assert set(outcome.body) == {"error"}, label
        assert outcome.body["error"]["type"] == "invalid_request_error", label
        message = outcome.body["error"]["message"]
    else:
        assert outcome.status == status, label
        assert set(outcome.body) == {"success", "error"}, label
        assert outcome.body["success"] is False, label
        assert outcome.body["error"]["code"] == "ERR_VALIDATION", label
        assert outcome.headers is not None and outcome.headers["x-error-code"] == "ERR_VALIDATION"
        message = outcome.body["error"]["message"]
    assert words in message, label


async def _refused_without_a_trace(
    live: Live, door: Door, text: str, files: list[str], status: int, words: str
) -> None:
    key = await door.setup(live)
    before = await _stored(live)
    outcome = await door.send(live, key, text, files)
    _assert_refused(door, outcome, status, words)
    assert await _stored(live) == before
    assert live.scripted.requests == []


@pytest.mark.parametrize("door", DOORS, ids=lambda d: d.name)
async def test_a_message_one_character_over_the_limit_is_refused_on_every_door(
    live: Live, door: Door
) -> None:
    await _refused_without_a_trace(
        live, door, "x" * (CHARS + 1), [], 400, f"longer than {CHARS} characters"
    )


@pytest.mark.parametrize("door", DOORS, ids=lambda d: d.name)
async def test_a_message_at_the_limit_goes_through_on_every_door(live: Live, door: Door) -> None:
    live.scripted.enqueue([{"text": "Read it."}])
    text = "y" * CHARS
    outcome = await door.send(live, await door.setup(live), text, [])
    assert outcome.status == 200, f"{door.name}: {outcome.status} {str(outcome.body)[:300]}"
    [request] = live.scripted.requests
    asked = [m.content for m in request.messages if m.role == "user"]
    assert text in asked, asked


@pytest.mark.parametrize("door", DOORS, ids=lambda d: d.name)
async def test_a_body_over_the_size_limit_is_refused_on_every_door(live: Live, door: Door) -> None:
    await _refused_without_a_trace(
        live, door, "z" * (BODY_BYTES + 1), [], 413, f"over {BODY_BYTES} bytes"
    )


FILE_DOORS = [d for d in DOORS if d.takes_files]


@pytest.mark.parametrize("door", FILE_DOORS, ids=lambda d: d.name)
async def test_too_many_attachments_are_refused_on_every_door_that_takes_them(
    live: Live, door: Door
) -> None:
    files = [SMALL_FILE] * (ATTACHMENTS + 1)
    await _refused_without_a_trace(
        live, door, "see attached", files, 400, f"at most {ATTACHMENTS} attachments"
    )


@pytest.mark.parametrize("door", FILE_DOORS, ids=lambda d: d.name)
async def test_an_attachment_over_the_size_limit_is_refused_on_every_door_that_takes_them(
    live: Live, door: Door
) -> None:
    await _refused_without_a_trace(
        live, door, "see attached", [BIG_FILE], 400, f"over {ATTACHMENT_BYTES} bytes"
    )
