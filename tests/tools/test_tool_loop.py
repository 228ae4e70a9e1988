"""The tool loop: several steps, parallel calls, per-call timeouts, results cut for the model
but stored whole."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from tests.conftest import Live
from tests.support.sse import collect, kinds
from tests.tools.conftest import call, conversation, named, send

from parley.providers.scripted import ScriptedProvider
from parley.tools.base import FunctionTool, ToolContext, ToolOutput
from parley.tools.registry import ToolRegistry

LONG = "x" * 500


@pytest.fixture
def tool_registry() -> ToolRegistry:
    registry = ToolRegistry()
    ping, pong = asyncio.Event(), asyncio.Event()

    async def first(args: dict[str, Any], context: ToolContext) -> str:
        ping.set()
        await pong.wait()  # returns only if ``second`` runs at the same time
        return "first"

    async def second(args: dict[str, Any], context: ToolContext) -> str:
        await ping.wait()
        pong.set()
        return "second"

    async def long(args: dict[str, Any], context: ToolContext) -> str:
        return LONG

    async def stuck(args: dict[str, Any], context: ToolContext) -> str:
        await asyncio.Event().wait()
        return "never"

    async def refuses(args: dict[str, Any], context: ToolContext) -> ToolOutput:
        return ToolOutput("no such thing", is_error=True)

    async def broken(args: dict[str, Any], context: ToolContext) -> str:
        raise RuntimeError("kaput")

    for name, func in [
        ("first", first),
        ("second", second),
        ("long", long),
        ("stuck", stuck),
        ("refuses", refuses),
        ("broken", broken),
    ]:
        registry.register(FunctionTool(name, func, read_only=True))
    return registry


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"tool_timeout": 0.3, "tool_result_max_chars": 100}


async def test_calls_of_one_step_run_in_parallel(live: Live, scripted: ScriptedProvider) -> None:
    scripted.enqueue([call("first", {}, "f"), call("second", {}, "s")], [{"text": "both"}])
    cid = await conversation(live)
    async with asyncio.timeout(5):
        _, events = await send(live, cid, "both at once")
    assert {e["result"] for e in named(events, "tool_result")} == {"first", "second"}
    assert kinds(events)[-2:] == ["done", "[DONE]"]


async def test_failures_are_tool_errors_the_model_sees_and_the_loop_goes_on(
    live: Live, scripted: ScriptedProvider
) -> None:
    scripted.enqueue(
        [
            call("stuck", {}, "t"),
            call("refuses", {}, "r"),
            call("broken", {}, "b"),
            call("nope", {}, "n"),
        ],
        [call("long", {}, "l")],
        [{"text": "done"}],
    )
    cid = await conversation(live)
    _, events = await send(live, cid, "go")
    errors = {e["tool_call_id"]: e["error"] for e in named(events, "tool_error")}
    assert errors == {
        "t": "the tool did not answer within 0.3 seconds",
        "r": "no such thing",
        "b": "RuntimeError: kaput",
        "n": "unknown tool 'nope'",
    }
    async with live.client() as http:
        audit = (await http.get(f"/api/conversations/{cid}/tool-calls")).json()["items"]
    statuses = {r["tool_call_id"]: r["status"] for r in audit}
    assert statuses == {
        "t": "timed_out",
        "r": "failed",
        "b": "failed",
        "n": "failed",
        "l": "succeeded",
    }
    second_step = scripted.requests[1].messages
    assert {m.tool_call_id: m.content for m in second_step if m.role == "tool"}["b"] == (
        "Error: RuntimeError: kaput"
    )


async def test_a_long_result_is_cut_for_the_model_and_stored_whole(
    live: Live, scripted: ScriptedProvider
) -> None:
    scripted.enqueue([call("long", {}, "l")], [{"text": "read it"}])
    cid = await conversation(live)
    _, events = await send(live, cid, "long")
    assert named(events, "tool_result")[0]["result"] == LONG
    told = scripted.requests[1].messages[-1].content
    assert told.startswith("x" * 100) and "[... cut: 400 more characters]" in told
    async with live.client() as http:
        audit = (await http.get(f"/api/conversations/{cid}/tool-calls")).json()["items"]
        reply = (await http.get(f"/api/conversations/{cid}")).json()["messages"][-1]
    assert audit[0]["result"] == LONG
    assert next(p for p in reply["parts"] if p["type"] == "dynamic-tool")["output"] == LONG


async def test_a_storage_error_inside_a_tool_is_not_shown_to_the_model_or_the_client(
    live: Live, scripted: ScriptedProvider, tool_registry: ToolRegistry
) -> None:
    from parley.store.errors import StorageError

    async def broken(args: dict[str, Any], context: ToolContext) -> Any:
        raise StorageError("disk I/O error: SELECT secret_column FROM users")

    tool_registry.register(FunctionTool("broken", broken, read_only=True))
    scripted.enqueue(
        [{"tool_call": {"name": "broken", "arguments": {}, "id": "c1"}}], [{"text": "sorry"}]
    )
    convo = await live.services.store.create_conversation("alice")
    async with live.client() as http:
        _, events = await collect(
            http, "POST", f"/api/conversations/{convo.id}/messages", json_body={"content": "go"}
        )
    errors = [e.data["error"] for e in events if e.event == "tool_error"]
    assert errors == ["the tool failed with an internal error (StorageError); it is logged"]
    told = scripted.requests[1].messages[-1].content
    assert isinstance(told, str) and "secret_column" not in told and "internal error" in told
