"""The todo app: its assistant, ``POST /api/{user_id}/chat`` (one JSON reply or a ``data:`` stream),
its task routes over the assistant's tasks, and its error shape ``{"error": "<message>"}``."""

from __future__ import annotations

from typing import Any

import pytest
from structlog.testing import capture_logs
from tests.conftest import Live
from tests.support.sse import collect

from parley.api.routes.todo_chat import PROVIDER_FAILURE
from parley.providers.scripted import ScriptedProvider
from parley.tools.base import FunctionTool, ToolContext
from parley.tools.registry import ToolRegistry
from parley.tools.todo import todo_tools as builtin_todo_tools


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
    assert forbidden.json() == {"error": "this route belongs to another user"}
    assert forbidden.headers["x-error-code"] == "ERR_FORBIDDEN"
    assert (foreign.status_code, foreign.json()) == (404, {"error": "conversation not found"})


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"message": ""}, "message is required"),
        ({"message": "   "}, "message is required"),
        ({}, "message: Field required"),
    ],
)
async def test_an_empty_message_is_a_400_with_the_error_as_text(
    live: Live, scripted: ScriptedProvider, body: dict[str, Any], error: str
) -> None:
    async with live.client() as http:
        response = await http.post("/api/alice/chat", json=body)
        conversations = (await http.get("/api/conversations")).json()["items"]
    assert (response.status_code, response.json()) == (400, {"error": error})
    assert conversations == [] and scripted.requests == []


UPSTREAM = "openai refused the request (HTTP 400): Invalid 'messages[3]' for org-SECRETORG"


async def test_a_provider_failure_is_told_in_plain_words_and_its_text_kept_for_the_log(
    live: Live, scripted: ScriptedProvider
) -> None:
    failure = {"error": {"code": "ERR_PROVIDER_UNAVAILABLE", "message": UPSTREAM}}
    scripted.enqueue([failure], [failure])
    with capture_logs() as logs:
        async with live.client() as http:
            reply = await http.post("/api/alice/chat", json={"message": "Add milk"})
            _, events = await collect(
                http,
                "POST",
                "/api/alice/chat",
                json_body={"message": "Add milk"},
                headers={"Accept": "text/event-stream"},
            )
    assert (reply.status_code, reply.json()) == (502, {"error": PROVIDER_FAILURE})
    assert reply.headers["x-error-code"] == "ERR_PROVIDER_UNAVAILABLE"
    assert [e.data for e in events] == [
        {"type": "error", "error": PROVIDER_FAILURE, "code": "ERR_PROVIDER_UNAVAILABLE"}
    ]
    assert "SECRETORG" not in reply.text + str(events)
    details = [e["detail"] for e in logs if e["event"] == "todo_chat_provider_failed"]
    assert details == [UPSTREAM, UPSTREAM]


# the app's task pages: the same tasks as the assistant's tools


@pytest.fixture
def todo(live: Live) -> None:
    """The built-in todo tools, as `parley serve` offers them."""
    for tool in builtin_todo_tools(live.services.store):
        live.tools.register(tool)


async def test_a_task_the_assistant_adds_is_in_the_app_and_one_the_app_adds_in_the_assistants(
    live: Live, scripted: ScriptedProvider, todo: None
) -> None:
    add = {"tool_call": {"name": "add_task", "arguments": {"title": "Buy milk"}, "id": "c1"}}
    listing = {"tool_call": {"name": "list_tasks", "arguments": {}, "id": "c2"}}
    scripted.enqueue([add], [{"text": "Added."}], [listing], [{"text": "Two tasks."}])
    async with live.client() as http:
        await http.post("/api/alice/chat", json={"message": "Add a task to buy milk"})
        in_app = (await http.get("/api/alice/tasks")).json()
        added = await http.post(
            "/api/alice/tasks", json={"title": "Call mom", "description": "Sunday"}
        )
        reply = (await http.post("/api/alice/chat", json={"message": "What are my tasks?"})).json()
    assert [(t["title"], t["user_id"], t["completed"]) for t in in_app] == [
        ("Buy milk", "alice", False)
    ]
    assert added.status_code == 201
    listed = reply["tool_calls"][0]["result"]
    assert [t["title"] for t in listed] == ["Buy milk", "Call mom"]  # the list, as the app reads
    assert listed[1]["description"] == "Sunday"


async def test_tasks_are_read_changed_filtered_and_deleted_through_rest(
    live: Live, scripted: ScriptedProvider
) -> None:
    async with live.client() as http:
        first = (await http.post("/api/alice/tasks", json={"title": "Buy milk"})).json()
        second = (await http.post("/api/alice/tasks", json={"title": "Call mom"})).json()
        one = f"/api/alice/tasks/{first['id']}"
        read = (await http.get(one)).json()
        patched = (await http.patch(one, json={"completed": True})).json()
        put = (await http.put(one, json={"title": "Buy oat milk", "description": "2 l"})).json()
        done = (await http.get("/api/alice/tasks", params={"completed": "true"})).json()
        open_ = (await http.get("/api/alice/tasks", params={"completed": "false"})).json()
        deleted = await http.delete(f"/api/alice/tasks/{second['id']}")
        gone = await http.get(f"/api/alice/tasks/{second['id']}")
        nothing = await http.patch(one, json={})
        no_title = await http.post("/api/alice/tasks", json={"title": ""})
    assert (read["title"], read["completed"], read["description"]) == ("Buy milk", False, None)
    assert patched["completed"] is True
    assert (put["title"], put["description"], put["completed"]) == ("Buy oat milk", "2 l", True)
    assert [t["id"] for t in done] == [first["id"]]
    assert [t["id"] for t in open_] == [second["id"]]
    assert (deleted.status_code, deleted.json()) == (200, {"id": second["id"], "deleted": True})
    assert (gone.status_code, gone.json()) == (404, {"error": f"task {second['id']} not found"})
    assert nothing.status_code == 400 and "nothing to change" in nothing.json()["error"]
    assert no_title.status_code == 400 and isinstance(no_title.json()["error"], str)
    assert [t.title for t in await live.services.store.list_tasks("alice")] == ["Buy oat milk"]


async def test_another_users_tasks_are_forbidden_by_path_and_not_found_by_id(
    live: Live, scripted: ScriptedProvider
) -> None:
    bobs = await live.services.store.add_task("bob", "bob's task", None)
    async with live.client() as http:
        forbidden = await http.get("/api/bob/tasks")
        posted = await http.post("/api/bob/tasks", json={"title": "sneaky"})
        by_id = await http.get(f"/api/alice/tasks/{bobs.id}")
        changed = await http.patch(f"/api/alice/tasks/{bobs.id}", json={"completed": True})
        deleted = await http.delete(f"/api/alice/tasks/{bobs.id}")
        listed = (await http.get("/api/alice/tasks")).json()
    assert (forbidden.status_code, forbidden.json()) == (
        403,
        {"error": "this route belongs to another user"},
    )
    assert posted.status_code == 403
    assert [r.status_code for r in (by_id, changed, deleted)] == [404, 404, 404]
    assert listed == []
    assert [(t.title, t.completed) for t in await live.services.store.list_tasks("bob")] == [
        ("bob's task", False)
    ]


async def test_the_stream_gives_list_tasks_as_the_list_the_app_reads(
    live: Live, scripted: ScriptedProvider, todo: None
) -> None:
    await live.services.store.add_task("alice", "milk", None)
    listing = {"tool_call": {"name": "list_tasks", "arguments": {}, "id": "c1"}}
    scripted.enqueue([listing], [{"text": "One."}])
    async with live.client() as http:
        _, events = await collect(
            http,
            "POST",
            "/api/alice/chat",
            json_body={"message": "my tasks?"},
            headers={"Accept": "text/event-stream"},
        )
    [result] = [e.data for e in events if e.data["type"] == "tool_result"]
    assert [(t["title"], t["completed"]) for t in result["result"]] == [("milk", False)]
