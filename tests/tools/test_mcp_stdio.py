"""MCP servers over stdio: tools listed and cached, progress, crash and reconnection, a hung
server, ``tools/list_changed``, and a third-party server from PyPI (``mcp-server-time``)."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from typing import Any

import pytest
from tests.conftest import Live
from tests.support.sse import kinds
from tests.tools.conftest import call, conversation, named, send, toy_server

from parley.config import McpServerConfig
from parley.providers.scripted import ScriptedProvider
from parley.tools.base import ToolContext
from parley.tools.mcp import McpServer
from parley.tools.setup import ToolManager


@pytest.fixture
def settings_overrides(request: pytest.FixtureRequest) -> dict[str, Any]:
    if getattr(request, "param", None) == "time":
        return {"mcp_servers": [request.getfixturevalue("time_server")]}
    return {"mcp_servers": [toy_server(timeout=3.0, require_approval=["delete_file"])]}


def manager(live: Live) -> ToolManager:
    tools = live.services.tools
    assert isinstance(tools, ToolManager)
    return tools


async def test_the_servers_tools_join_the_registry_with_their_annotations(live: Live) -> None:
    tools = {t.name: t for t in live.services.tools.all() if t.server == "toy"}
    assert set(tools) == {"echo", "count", "delete_file", "grow", "crash", "hang", "pid"}
    assert tools["echo"].read_only and not tools["count"].read_only
    assert tools["delete_file"].requires_approval and not tools["echo"].requires_approval
    assert tools["echo"].input_schema["required"] == ["text"]
    assert "add_task" in {t.name for t in live.services.tools.all()}


async def test_a_call_streams_progress_and_returns_structured_content(
    live: Live, scripted: ScriptedProvider
) -> None:
    scripted.enqueue(
        [call("echo", {"text": "hello"}), call("count", {"steps": 3})], [{"text": "ok"}]
    )
    cid = await conversation(live)
    _, events = await send(live, cid, "echo and count")
    results = {e["tool_name"]: e["result"] for e in named(events, "tool_result")}
    assert results == {"echo": {"result": "hello"}, "count": {"result": 3}}
    progress = named(events, "tool_progress")
    assert [(p["message"], p["progress"], p["total"]) for p in progress] == [
        ("step 1", 1.0, 3.0),
        ("step 2", 2.0, 3.0),
        ("step 3", 3.0, 3.0),
    ]
    assert kinds(events)[-2:] == ["done", "[DONE]"]
    async with live.client() as http:
        audit = (await http.get(f"/api/conversations/{cid}/tool-calls")).json()["items"]
    assert {(r["tool_name"], r["server"], r["read_only"]) for r in audit} == {
        ("echo", "toy", True),
        ("count", "toy", False),
    }


async def test_a_server_crashing_mid_call_is_a_tool_error_and_it_is_reconnected(
    live: Live, scripted: ScriptedProvider
) -> None:
    server = manager(live).mcp["toy"]
    scripted.enqueue([call("pid")], [{"text": "a"}])
    scripted.enqueue([call("crash")], [{"text": "it crashed"}])
    scripted.enqueue([call("pid")], [{"text": "b"}])
    cid = await conversation(live)
    _, before = await send(live, cid, "pid")
    _, crashed = await send(live, cid, "crash")
    [error] = named(crashed, "tool_error")
    assert error["error"] == "the MCP server 'toy' closed the connection during the call"
    assert kinds(crashed)[-2:] == ["done", "[DONE]"]
    _, after = await send(live, cid, "pid again")
    first_pid = named(before, "tool_result")[0]["result"]["result"]
    second_pid = named(after, "tool_result")[0]["result"]["result"]
    assert first_pid != second_pid
    assert server.connections == 2


async def test_a_hung_server_times_out_and_the_run_finishes(
    live: Live, scripted: ScriptedProvider
) -> None:
    scripted.enqueue([call("hang"), call("echo", {"text": "still fine"})], [{"text": "moving on"}])
    cid = await conversation(live)
    async with asyncio.timeout(10):
        _, events = await send(live, cid, "hang")
    [error] = named(events, "tool_error")
    assert error["error"] == "the MCP server 'toy' did not answer within 3 seconds"
    assert named(events, "tool_result")[0]["result"] == {"result": "still fine"}
    assert kinds(events)[-2:] == ["done", "[DONE]"]
    async with live.client() as http:
        audit = (await http.get(f"/api/conversations/{cid}/tool-calls")).json()["items"]
    assert {r["tool_name"]: r["status"] for r in audit} == {
        "hang": "timed_out",
        "echo": "succeeded",
    }


async def test_tools_list_changed_refreshes_the_cached_list(
    live: Live, scripted: ScriptedProvider
) -> None:
    server = manager(live).mcp["toy"]
    seen = server.refreshes
    assert live.services.tools.get("late") is None
    scripted.enqueue([call("grow")], [{"text": "grown"}])
    cid = await conversation(live)
    await send(live, cid, "grow")
    async with asyncio.timeout(5):
        await server.wait_refresh(seen)
    late = live.services.tools.get("late")
    assert late is not None and late.read_only and late.server == "toy"


async def test_a_server_that_cannot_start_is_retried_and_offers_no_tools() -> None:
    config = McpServerConfig(name="ghost", command="/nonexistent/mcp-server", timeout=2)
    server = McpServer(config)
    try:
        async with asyncio.timeout(5):
            await server.start()
        assert not server.connected and server.specs == []
        context = ToolContext(user_id="u", run_id="r", conversation_id="c", tool_call_id="t")
        output = await server.call("anything", {}, context)
        assert output.is_error and "not connected" in output.content
    finally:
        await server.aclose()


@pytest.fixture
def time_server() -> dict[str, Any]:
    if importlib.util.find_spec("mcp_server_time") is None:
        pytest.skip("mcp-server-time is not installed (dev extra)")
    args = ["-m", "mcp_server_time", "--local-timezone", "UTC"]
    return {"name": "time", "command": sys.executable, "args": args}


@pytest.mark.parametrize("settings_overrides", ["time"], indirect=True)
async def test_a_third_party_server_from_pypi_answers_through_parley(
    live: Live, scripted: ScriptedProvider
) -> None:
    tools = {t.name: t for t in live.services.tools.all() if t.server == "time"}
    assert {"get_current_time", "convert_time"} <= set(tools)
    scripted.enqueue(
        [call("get_current_time", {"timezone": "Europe/Paris"}), call("get_current_time", {})],
        [{"text": "It is noon."}],
    )
    cid = await conversation(live)
    _, events = await send(live, cid, "what time is it in Paris?")
    [result] = named(events, "tool_result")
    assert result["result"]["timezone"] == "Europe/Paris"
    [error] = named(events, "tool_error")
    assert error["error"].startswith("invalid arguments")
    assert kinds(events)[-2:] == ["done", "[DONE]"]
