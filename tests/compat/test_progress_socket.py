"""The progress socket with the ``websockets`` client: auth close codes, the todo app's message
shapes for runs that any door started, chatting over the socket, the conversation the URL names,
and the replay of what a socket missed while it was away."""

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
from parley.tools.todo import todo_tools


def ws_url(live: Live, user: str, jwt: str | None, **query: str) -> str:
    base = live.url.replace("http://", "ws://")
    params = ({"token": jwt} if jwt is not None else {}) | query
    return f"{base}/ws/{user}/chat" + ("?" + "&".join(f"{k}={v}" for k, v in params.items()))


async def receive(ws: ClientConnection) -> dict[str, Any]:
    async with asyncio.timeout(5):
        message: dict[str, Any] = json.loads(await ws.recv())
    return message


async def until_done(ws: ClientConnection, runs: int = 1) -> list[dict[str, Any]]:
    messages = [await receive(ws)]
    while sum(m["event_type"] == "agent_done" for m in messages) < runs:
        messages.append(await receive(ws))
    return messages


def call(name: str, args: dict[str, Any], call_id: str) -> dict[str, Any]:
    return {"tool_call": {"name": name, "arguments": args, "id": call_id}}


def seq(message: dict[str, Any]) -> int:
    run_id, _, number = message["event_id"].rpartition(":")
    assert run_id == message["run_id"]
    return int(number)


@pytest.fixture
def todo(live: Live) -> None:
    """The built-in todo tools, as `parley serve` offers them."""
    for tool in todo_tools(live.services.store):
        live.tools.register(tool)


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


async def test_a_todo_chat_sends_the_apps_progress_shapes(
    live: Live, scripted: ScriptedProvider, todo: None
) -> None:
    """``tool_progress`` counts the tasks ``list_tasks`` found, ``tool_complete`` of a task tool
    names the task, ``agent_done`` has the reply as ``response``; each run message has an id."""
    scripted.enqueue(
        [call("add_task", {"title": "milk"}, "c1")],
        [call("list_tasks", {}, "c2")],
        [call("complete_task", {"task_id": 999}, "c3")],
        [{"text": "Added milk."}],
    )
    async with connect(ws_url(live, "alice", token("alice"))) as ws:
        hello = await receive(ws)
        async with live.client() as http:
            reply = (await http.post("/api/alice/chat", json={"message": "Add milk"})).json()
        messages = await until_done(ws)
    [task] = await live.services.store.list_tasks("alice")
    assert hello == {
        "event_type": "connection_established",
        "tool": None,
        "task_id": None,
        "message": "connected",
        "count": None,
        "result": "alice",
        "error": None,
    }
    shapes = [(m["event_type"], m["tool"], m["task_id"], m["count"]) for m in messages]
    assert shapes == [
        ("agent_thinking", None, None, 0),
        ("tool_starting", "add_task", None, 1),
        ("tool_complete", "add_task", str(task.id), 1),
        ("tool_starting", "list_tasks", None, 2),
        ("tool_progress", "list_tasks", None, 1),
        ("tool_complete", "list_tasks", None, 2),
        ("tool_starting", "complete_task", None, 3),
        ("tool_error", "complete_task", None, 3),
        ("agent_done", None, None, 3),
    ]
    found = messages[4]
    assert (found["message"], found["progress"], found["total"]) == ("Found 1 task", 1, 1)
    assert messages[5]["result"]["count"] == 1
    assert "999" in messages[7]["error"]
    done = messages[-1]
    assert (done["response"], done["result"], done["error"]) == ("Added milk.", "Added milk.", None)
    assert (done["conversation_id"], done["message_id"]) == (
        reply["conversation_id"],
        reply["message_id"],
    )
    ids = [seq(m) for m in messages]
    assert ids == sorted(set(ids)) and all(m["run_id"] == done["run_id"] for m in messages)


async def test_the_todo_door_answers_list_tasks_as_the_list_the_app_reads(
    live: Live, scripted: ScriptedProvider, todo: None
) -> None:
    await live.services.store.add_task("alice", "milk", None)
    scripted.enqueue([call("list_tasks", {}, "c1")], [{"text": "One task."}])
    async with live.client() as http:
        reply = (await http.post("/api/alice/chat", json={"message": "my tasks?"})).json()
    [listed] = reply["tool_calls"]
    assert [(t["title"], t["completed"]) for t in listed["result"]] == [("milk", False)]


async def test_progress_a_tool_reports_and_a_tools_failure_keep_their_shape(
    live: Live, scripted: ScriptedProvider, tool_registry: ToolRegistry
) -> None:
    async def add_task(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
        await ctx.progress("saving", 1, 2)
        return {"id": 7, "title": args["title"]}

    async def list_tasks(args: dict[str, Any], ctx: ToolContext) -> Any:
        raise RuntimeError("the list is gone")

    tool_registry.register(FunctionTool("add_task", add_task))
    tool_registry.register(FunctionTool("list_tasks", list_tasks))
    scripted.enqueue(
        [call("add_task", {"title": "milk"}, "c1"), call("list_tasks", {}, "c2")],
        [{"text": "ok"}],
    )
    async with connect(ws_url(live, "alice", token("alice"))) as ws:
        await receive(ws)
        await ws.send(json.dumps({"type": "message", "content": "go"}))
        messages = await until_done(ws)
    by_kind = {(m["event_type"], m["tool"]): m for m in messages}
    saving = by_kind[("tool_progress", "add_task")]
    assert (saving["message"], saving["count"], saving["total"]) == ("saving", 1, 2)
    added = by_kind[("tool_complete", "add_task")]
    assert (added["task_id"], added["result"]) == ("7", {"id": 7, "title": "milk"})
    assert "the list is gone" in by_kind[("tool_error", "list_tasks")]["error"]


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
    assert bob_done[-1]["response"] == "for bob"
    assert [m["event_type"] for m in messages] == ["agent_thinking", "agent_done"]
    assert messages[-1]["response"] == "Hi alice"
    assert problem["event_type"] == "error"
    assert missing["error"]["code"] == "ERR_NOT_FOUND"
    convo = await live.services.store.get_conversation("alice", messages[-1]["conversation_id"])
    assert convo.profile == "todo"


async def test_the_conversation_the_url_names_is_echoed_and_chatted_in(
    live: Live, scripted: ScriptedProvider
) -> None:
    convo = await live.services.store.create_conversation("alice", profile="todo")
    bobs = await live.services.store.create_conversation("bob", profile="todo")
    scripted.enqueue([{"text": "here"}])
    url = ws_url(live, "alice", token("alice"), conversation_id=convo.id)
    async with connect(url) as ws:
        hello = await receive(ws)
        await ws.send(json.dumps({"type": "message", "content": "hi"}))
        messages = await until_done(ws)
    async with connect(ws_url(live, "alice", token("alice"), conversation_id=bobs.id)) as ws:
        refused = await receive(ws)
        with pytest.raises(ConnectionClosed) as closed:
            await receive(ws)
    assert (hello["event_type"], hello["conversation_id"]) == ("connection_established", convo.id)
    assert {m["conversation_id"] for m in messages} == {convo.id}
    assert (refused["event_type"], refused["error"]["code"]) == ("error", "ERR_NOT_FOUND")
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4404


async def test_a_reconnecting_socket_gets_what_it_missed_from_the_last_id_it_saw(
    live: Live, scripted: ScriptedProvider, todo: None
) -> None:
    scripted.enqueue(
        [call("add_task", {"title": "milk"}, "c1")],
        [{"wait": "answer"}, {"text": "Added milk."}],
        [{"text": "Second."}],
    )
    alice = token("alice")
    async with connect(ws_url(live, "alice", alice)) as ws:
        await receive(ws)
        await ws.send(json.dumps({"type": "message", "content": "add milk"}))
        seen = [await receive(ws)]
        while seen[-1]["event_type"] != "tool_complete":
            seen.append(await receive(ws))
    first_run = seen[-1]["run_id"]
    scripted.release("answer")  # the socket is away: the rest of the run happens unseen
    await live.services.runs.wait(first_run)
    async with live.client() as http:
        await http.post("/api/alice/chat", json={"message": "again"})  # a whole run unseen
    resumed = ws_url(live, "alice", alice, last_event_id=seen[-1]["event_id"])
    from_start = ws_url(live, "alice", alice, last_event_id=f"{first_run}:0")
    async with connect(resumed) as ws:
        await receive(ws)
        missed = await until_done(ws, runs=2)
    async with connect(from_start) as ws:
        await receive(ws)
        everything = await until_done(ws, runs=2)

    def of(messages: list[dict[str, Any]], first: bool) -> list[dict[str, Any]]:
        return [m for m in messages if (m["run_id"] == first_run) == first]

    assert [m["event_type"] for m in of(missed, True)] == ["agent_done"]
    assert of(missed, True)[0]["response"] == "Added milk."
    assert min(seq(m) for m in of(missed, True)) > seq(seen[-1])
    assert seen + of(missed, True) == of(everything, True)
    assert [m["event_type"] for m in of(missed, False)] == ["agent_thinking", "agent_done"]
    assert of(missed, False)[-1]["response"] == "Second."
    assert of(missed, False) == of(everything, False)


async def test_a_bad_or_foreign_last_event_id_is_an_error_message_and_the_socket_stays(
    live: Live, scripted: ScriptedProvider
) -> None:
    scripted.enqueue([{"text": "bob's"}], [{"text": "still here"}])
    async with connect(ws_url(live, "bob", token("bob"))) as bob:
        await receive(bob)
        await bob.send(json.dumps({"type": "message", "content": "hi"}))
        bobs = await until_done(bob)
    async with connect(ws_url(live, "alice", token("alice"), last_event_id="garbage")) as ws:
        bad = [await receive(ws), await receive(ws)]
    foreign = ws_url(live, "alice", token("alice"), last_event_id=bobs[-1]["event_id"])
    async with connect(foreign) as ws:
        hello, not_found = await receive(ws), await receive(ws)
        await ws.send(json.dumps({"type": "message", "content": "hi"}))
        messages = await until_done(ws)
    assert [m["event_type"] for m in bad] == ["error", "connection_established"]
    assert bad[0]["error"]["code"] == "ERR_VALIDATION"
    assert (hello["event_type"], not_found["event_type"]) == ("connection_established", "error")
    assert not_found["error"]["code"] == "ERR_NOT_FOUND"
    assert [m["event_type"] for m in messages] == ["agent_thinking", "agent_done"]
    assert messages[-1]["response"] == "still here"
