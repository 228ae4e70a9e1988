"""The todo assistant: ``POST /api/{user_id}/chat``, one JSON reply or a ``data:`` stream."""

from __future__ import annotations

from typing import Any

from tests.conftest import Live
from tests.support.sse import collect

from parley.providers.scripted import ScriptedProvider
from parley.tools.base import FunctionTool, ToolContext
from parley.tools.registry import ToolRegistry


def todo_tools(registry: ToolRegistry) -> list[dict[str, Any]]:
    tasks: list[dict[str, Any]] = []

    async def add_task(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
        tasks.append({"title": args["title"], "user": ctx.user_id})
        return {"id": len(tasks), "title": args["title"]}

    async def delete_task(args: dict[str, Any], ctx: ToolContext) -> str:
        return "deleted"

    registry.register(FunctionTool("add_task", add_task))
    registry.register(FunctionTool("delete_task", delete_task, requires_approval=True))
    registry.register(FunctionTool("send_email", add_task))  # not a todo tool
    return tasks


ADD_MILK = {"tool_call": {"name": "add_task", "arguments": {"title": "milk"}, "id": "call_1"}}


async def test_a_message_gets_one_json_reply_and_the_todo_tools_run(
    live: Live, scripted: ScriptedProvider, tool_registry: ToolRegistry
) -> None:
    tasks = todo_tools(tool_registry)
    scripted.enqueue([ADD_MILK], [{"text": "Added milk."}], [{"text": "Anything else?"}])
    async with live.client() as http:
        response = await http.post("/api/alice/chat", json={"message": "Add milk"})
        assert response.status_code == 200
        reply = response.json()
        assert set(reply) >= {"message_id", "conversation_id", "role", "content", "created_at"}
        assert (reply["role"], reply["content"]) == ("assistant", "Added milk.")
        assert reply["tool_calls"][0]["tool_name"] == "add_task"
        assert reply["tool_calls"][0]["status"] == "succeeded"
        follow_up = await http.post(
            "/api/alice/chat",
            json={"message": "Thanks", "conversation_id": reply["conversation_id"]},
        )
    assert follow_up.json()["conversation_id"] == reply["conversation_id"]
    assert tasks == [{"title": "milk", "user": "alice"}]
    offered = {t.name for t in scripted.requests[0].tools}
    assert offered == {"add_task", "delete_task"}
    assert "task assistant" in str(scripted.requests[0].messages[0].content)
    assert len(scripted.requests[2].messages) == 6  # system, q, tool call, result, answer, q


async def test_with_accept_event_stream_it_streams_chunks_and_tool_calls(
    live: Live, scripted: ScriptedProvider, tool_registry: ToolRegistry
) -> None:
    todo_tools(tool_registry)
    scripted.enqueue([ADD_MILK], [{"text": ["Added ", "milk."]}])
    async with live.client() as http:
        _, events = await collect(
            http,
            "POST",
            "/api/alice/chat",
            json_body={"message": "Add milk"},
            headers={"Accept": "text/event-stream"},
        )
    data = [e.data for e in events]
    assert data[:4] == [
        {"type": "tool_call", "tool_name": "add_task", "args": {"title": "milk"}},
        {"type": "tool_result", "tool_name": "add_task", "result": {"id": 1, "title": "milk"}},
        {"type": "chunk", "content": "Added "},
        {"type": "chunk", "content": "milk."},
    ]
    assert data[-1]["type"] == "done" and data[-1]["content"] == "Added milk."
    assert "[DONE]" not in data


async def test_a_tool_waiting_for_approval_comes_back_pending(
    live: Live, scripted: ScriptedProvider, tool_registry: ToolRegistry
) -> None:
    todo_tools(tool_registry)
    scripted.enqueue([{"tool_call": {"name": "delete_task", "arguments": {}, "id": "call_2"}}])
    async with live.client() as http:
        reply = (await http.post("/api/alice/chat", json={"message": "Delete it"})).json()
    assert reply["pending"][0]["tool_call_id"] == "call_2"
    assert reply["run_id"].startswith("run_")


async def test_another_users_path_is_forbidden_and_their_conversation_not_found(
    live: Live, scripted: ScriptedProvider
) -> None:
    async with live.client("bob") as bob:
        bobs = (await bob.post("/api/conversations", json={})).json()["id"]
    async with live.client() as http:
        forbidden = await http.post("/api/bob/chat", json={"message": "x"})
        foreign = await http.post("/api/alice/chat", json={"message": "x", "conversation_id": bobs})
    assert forbidden.status_code == 403
    assert forbidden.json()["error"]["code"] == "ERR_FORBIDDEN"
    assert foreign.status_code == 404
