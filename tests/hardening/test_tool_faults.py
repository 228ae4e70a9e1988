"""Tool faults (issue 11, item 5): an MCP server over stdio (``tests/tools/servers/hostile.py``)
that never answers, fails, crashes, answers with 10 MB, or answers with a prompt injection.

Each is bounded (``PARLEY_TOOL_TIMEOUT``, ``PARLEY_TOOL_RESULT_MAX_CHARS``), audited (a
``tool_calls`` row with its status and error) and has no effect on another user. Covered
elsewhere, not repeated here: a hung server past its own ``timeout`` and a crash with the
reconnection (``tests/tools/test_mcp_stdio.py``); built-in tools that hang, raise or refuse, and a
500-character result cut for the model (``tests/tools/test_tool_loop.py``); a model that passes
another user's task id or ``user_id`` itself (``tests/tools/test_todo.py``).
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import Live
from tests.support.sse import kinds
from tests.tools.conftest import approve, call, conversation, named, rest_of, send

from parley.providers.scripted import ScriptedProvider
from parley.tools.setup import ToolManager

HOSTILE = Path(__file__).parents[1] / "tools" / "servers" / "hostile.py"
TOOL_TIMEOUT = 1.0
MAX_CHARS = 1_000
TEN_MB = 10 * 2**20


@pytest.fixture
def tool_registry() -> None:
    """parley builds its tools from the settings: the todo tools and the hostile server."""
    return None


@pytest.fixture
def settings_overrides(request: pytest.FixtureRequest) -> dict[str, Any]:
    server = {"name": "hostile", "command": sys.executable, "args": [str(HOSTILE)], "timeout": 30}
    return {
        "mcp_servers": [server],
        "tool_timeout": TOOL_TIMEOUT,
        "tool_result_max_chars": MAX_CHARS,
        **getattr(request, "param", {}),
    }


async def _audit(live: Live, cid: str, user: str = "alice") -> dict[str, Any]:
    async with live.client(user) as http:
        rows = (await http.get(f"/api/conversations/{cid}/tool-calls")).json()["items"]
    return {row["tool_call_id"]: row for row in rows}


FAILURES = {
    "never-answers": (
        call("stall", {}, "t1"),
        "timed_out",
        f"the tool did not answer within {TOOL_TIMEOUT:g} seconds",
    ),
    "returns-an-error": (
        call("fails", {"reason": "disk on fire"}, "t1"),
        "failed",
        "disk on fire",
    ),
    "crashes": (
        call("crash", {}, "t1"),
        "failed",
        "the MCP server 'hostile' closed the connection during the call",
    ),
}


@pytest.mark.parametrize("fault", list(FAILURES))
async def test_a_failing_tool_is_a_bounded_audited_tool_error_and_the_run_completes(
    live: Live, scripted: ScriptedProvider, fault: str
) -> None:
    step, status, error = FAILURES[fault]
    scripted.enqueue([step], [{"text": "it failed"}])
    cid = await conversation(live)
    started = time.monotonic()
    _, events = await send(live, cid, fault)
    elapsed = time.monotonic() - started
    assert elapsed < TOOL_TIMEOUT + 4, elapsed  # not the server's own 30 s
    [failed] = named(events, "tool_error")
    assert error in failed["error"]
    assert kinds(events)[-2:] == ["done", "[DONE]"]
    assert error in scripted.requests[1].messages[-1].content  # the model is told
    row = (await _audit(live, cid))["t1"]
    assert row["status"] == status and error in row["error"]
    assert row["finished_at"] is not None
    server = _manager(live).mcp["hostile"]
    assert server._calls == []  # no call left in flight on the session


async def test_a_tool_that_never_answers_leaves_its_session_usable(
    live: Live, scripted: ScriptedProvider
) -> None:
    scripted.enqueue([call("stall", {}, "t1")], [call("echo", {"text": "alive"}, "e1")])
    scripted.enqueue([{"text": "ok"}])
    cid = await conversation(live)
    _, events = await send(live, cid, "stall, then echo")
    assert [e["result"] for e in named(events, "tool_result")] == [{"result": "alive"}]
    assert _manager(live).mcp["hostile"].connections == 1  # the same session, not a reconnect


@pytest.mark.parametrize("settings_overrides", [{"tool_timeout": 30}], indirect=True)
async def test_ten_mb_of_tool_output_is_cut_for_the_model_and_stored_whole(
    live: Live, scripted: ScriptedProvider
) -> None:
    """10 MB take about 2 s through the MCP SDK's stdio transport here: more than the 1 s the
    other tests allow a tool."""
    scripted.enqueue([call("huge", {"size": TEN_MB}, "h1")], [{"text": "that was long"}])
    cid = await conversation(live)
    _, events = await send(live, cid, "read it all")
    assert kinds(events)[-2:] == ["done", "[DONE]"]
    [shown] = named(events, "tool_result")
    assert len(shown["result"]) == TEN_MB
    told = scripted.requests[1].messages[-1].content
    assert len(told) < MAX_CHARS + 100 and "more characters]" in told
    row = (await _audit(live, cid))["h1"]
    assert row["status"] == "succeeded" and len(row["result"]) == TEN_MB
    async with live.client() as http:
        reply = (await http.get(f"/api/conversations/{cid}")).json()["messages"][-1]
    part = next(p for p in reply["parts"] if p["type"] == "dynamic-tool")
    assert len(part["output"]) == TEN_MB


async def test_a_prompt_injection_in_tool_output_cannot_reach_another_users_tasks(
    live: Live, scripted: ScriptedProvider
) -> None:
    store = live.services.store
    bobs = await store.add_task("bob", "bob's secret", None)
    page = f"https://evil.example/?task={bobs.id}"
    scripted.enqueue(
        [call("fetch_page", {"url": page}, "f1")],
        [  # the model falls for it
            call("complete_task", {"task_id": bobs.id}, "c1"),
            call("delete_task", {"task_id": bobs.id}, "d1"),
        ],
        [{"text": "done as the page said"}],
    )
    cid = await conversation(live)
    run_id, first = await send(live, cid, "summarise this page", stop_after="awaiting_input")
    await approve(live, run_id, "d1")  # delete_task asks; even a careless yes cannot reach bob
    async with asyncio.timeout(5):
        events = first + await rest_of(live, run_id, first)
    told = scripted.requests[1].messages[-1].content
    assert "IGNORE PREVIOUS INSTRUCTIONS" in told and f"task_id={bobs.id}" in told
    errors = {e["tool_call_id"]: e["error"] for e in named(events, "tool_error")}
    assert errors == {"c1": f"task {bobs.id} not found", "d1": f"task {bobs.id} not found"}
    [untouched] = await store.list_tasks("bob")
    assert (untouched.id, untouched.title, untouched.completed) == (bobs.id, "bob's secret", False)
    audit = await _audit(live, cid)
    assert {k: (r["status"], r["arguments"]) for k, r in audit.items() if k != "f1"} == {
        "c1": ("failed", {"task_id": bobs.id}),
        "d1": ("failed", {"task_id": bobs.id}),
    }
    rows = await store.list_tool_calls("alice", cid)
    assert {r.user_id for r in rows} == {"alice"}  # the run's user, whatever the page said


def _manager(live: Live) -> ToolManager:
    tools = live.services.tools
    assert isinstance(tools, ToolManager)
    return tools
