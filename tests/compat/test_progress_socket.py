"""The progress socket with the ``websockets`` client: auth close codes, progress of runs that any
door started, and chatting over the socket."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from tests.conftest import Live, token
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from parley.providers.scripted import ScriptedProvider
from parley.tools.base import FunctionTool, ToolContext
from parley.tools.registry import ToolRegistry


def ws_url(live: Live, user: str, jwt: str | None) -> str:
    base = live.url.replace("http://", "ws://")
    return f"{base}/ws/{user}/chat" + (f"?token={jwt}" if jwt is not None else "")


async def receive(ws: ClientConnection) -> dict[str, Any]:
    async with asyncio.timeout(5):
        message: dict[str, Any] = json.loads(await ws.recv())
    return message


async def until_done(ws: ClientConnection) -> list[dict[str, Any]]:
    messages = [await receive(ws)]
    while messages[-1]["event_type"] != "agent_done":
        messages.append(await receive(ws))
    return messages


def register_tools(registry: ToolRegistry) -> None:
    async def add_task(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
        await ctx.progress("saving", 1, 2)
        return {"id": 1, "title": args["title"]}

    async def list_tasks(args: dict[str, Any], ctx: ToolContext) -> Any:
        raise RuntimeError("the list is gone")

    registry.register(FunctionTool("add_task", add_task))
    registry.register(FunctionTool("list_tasks", list_tasks))


@pytest.mark.parametrize(
    ("user", "jwt", "code"),
    [
        ("alice", None, 4401),
        ("alice", "not-a-jwt", 4401),
        ("bob", token("alice"), 4403),
    ],
)
async def test_a_bad_token_or_a_foreign_user_closes_the_socket(
    live: Live, user: str, jwt: str | None, code: int
) -> None:
    async with connect(ws_url(live, user, jwt)) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            await receive(ws)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == code


async def test_the_socket_reports_the_progress_of_a_run_started_by_another_door(
    live: Live, scripted: ScriptedProvider, tool_registry: ToolRegistry
) -> None:
    register_tools(tool_registry)
    scripted.enqueue(
        [
            {"tool_call": {"name": "add_task", "arguments": {"title": "milk"}, "id": "c1"}},
            {"tool_call": {"name": "list_tasks", "arguments": {}, "id": "c2"}},
        ],
        [{"text": "Added milk."}],
    )
    async with connect(ws_url(live, "alice", token("alice"))) as ws:
        hello = await receive(ws)
        assert hello == {
            "event_type": "connection_established",
            "tool": None,
            "message": "connected",
            "count": None,
            "result": "alice",
            "error": None,
        }
        async with live.client() as http:
            reply = (await http.post("/api/alice/chat", json={"message": "Add milk"})).json()
        messages = await until_done(ws)
    kinds = [(m["event_type"], m["tool"]) for m in messages]
    assert kinds[0] == ("agent_thinking", None)
    assert ("tool_starting", "add_task") in kinds and ("tool_starting", "list_tasks") in kinds
    assert ("tool_progress", "add_task") in kinds
    assert ("tool_complete", "add_task") in kinds and ("tool_error", "list_tasks") in kinds
    complete = next(m for m in messages if m["event_type"] == "tool_complete")
    assert complete["result"] == {"id": 1, "title": "milk"}
    failed = next(m for m in messages if m["event_type"] == "tool_error")
    assert "the list is gone" in failed["error"]
    done = messages[-1]
    assert (done["result"], done["count"], done["error"]) == ("Added milk.", 2, None)
    assert done["conversation_id"] == reply["conversation_id"]
    assert done["message_id"] == reply["message_id"]


async def test_a_client_chats_over_the_socket_and_sees_only_its_own_runs(
    live: Live, scripted: ScriptedProvider
) -> None:
    scripted.enqueue([{"text": "for bob"}], [{"text": "Hi alice"}])
    async with (
        connect(ws_url(live, "alice", token("alice"))) as alice,
        connect(ws_url(live, "bob", token("bob"))) as bob,
    ):
        await receive(alice)
        await receive(bob)
        await bob.send(json.dumps({"type": "message", "content": "hello"}))
        bob_done = await until_done(bob)
        await alice.send(json.dumps({"type": "message", "content": "hello"}))
        messages = await until_done(alice)
        await alice.send("not json")
        problem = await receive(alice)
        await alice.send(
            json.dumps({"type": "message", "content": "x", "conversation_id": "conv_x"})
        )
        missing = await receive(alice)
    assert bob_done[-1]["result"] == "for bob"
    assert [m["event_type"] for m in messages] == ["agent_thinking", "agent_done"]
    assert messages[-1]["result"] == "Hi alice"
    assert problem["event_type"] == "error"
    assert missing["error"]["code"] == "ERR_NOT_FOUND"
    convo = await live.services.store.get_conversation("alice", messages[-1]["conversation_id"])
    assert convo.profile == "todo"
