"""The progress socket across two processes on one PostgreSQL and Redis: a socket on one process
follows the todo chat sent to the other, and a socket reconnecting to either gets what it missed."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from tests.conftest import auth, token
from tests.fakes.openai_server import FakeOpenAI, text, tool_calls
from tests.support.processes import ParleyProcess
from websockets.asyncio.client import ClientConnection, connect

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]


def socket_url(process: ParleyProcess, **query: str) -> str:
    params = "".join(f"&{key}={value}" for key, value in query.items())
    return f"{process.url.replace('http://', 'ws://')}/ws/alice/chat?token={token('alice')}{params}"


async def receive(ws: ClientConnection) -> dict[str, Any]:
    async with asyncio.timeout(15):
        message: dict[str, Any] = json.loads(await ws.recv())
    return message


async def until_done(ws: ClientConnection) -> list[dict[str, Any]]:
    messages = [await receive(ws)]
    while messages[-1]["event_type"] != "agent_done":
        messages.append(await receive(ws))
    return messages


async def test_a_socket_on_a_follows_the_todo_chat_sent_to_b_and_replays_on_either(
    pair: tuple[ParleyProcess, ParleyProcess], fake: FakeOpenAI
) -> None:
    a, b = pair
    fake.enqueue(tool_calls(("call_list", "list_tasks", ["{}"])), text("You have ", "one task."))
    async with httpx.AsyncClient(base_url=b.url, headers=auth("alice"), timeout=20) as on_b:
        await on_b.post("/api/alice/tasks", json={"title": "milk"})
        async with connect(socket_url(a)) as ws:
            hello = await receive(ws)
            reply = (await on_b.post("/api/alice/chat", json={"message": "my tasks?"})).json()
            messages = await until_done(ws)
    assert hello["event_type"] == "connection_established"
    shapes = [(m["event_type"], m["tool"], m["count"]) for m in messages]
    assert shapes == [
        ("agent_thinking", None, 0),
        ("tool_starting", "list_tasks", 1),
        ("tool_progress", "list_tasks", 1),
        ("tool_complete", "list_tasks", 1),
        ("agent_done", None, 1),
    ]
    assert messages[-1]["response"] == "You have one task."
    assert messages[-1]["message_id"] == reply["message_id"]
    assert [t["title"] for t in reply["tool_calls"][0]["result"]] == ["milk"]

    seen = messages[:2]  # a socket that went away after tool_starting
    for process in (a, b):
        async with connect(socket_url(process, last_event_id=seen[-1]["event_id"])) as ws:
            await receive(ws)
            missed = await until_done(ws)
        assert seen + missed == messages
