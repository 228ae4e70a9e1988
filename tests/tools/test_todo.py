"""The built-in todo tools: mounted in process, scoped to the run's user, served alone by
``parley mcp todo`` over stdio."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, StdioServerParameters
from tests.conftest import SECRET, Live
from tests.support.sse import kinds
from tests.tools.conftest import approve, call, conversation, named, rest_of, send

from parley.providers.scripted import ScriptedProvider
from parley.tools.setup import ToolManager


async def test_add_then_list_runs_both_tools_and_stores_the_task_for_that_user_only(
    live: Live, scripted: ScriptedProvider
) -> None:
    scripted.enqueue(
        [call("add_task", {"title": "buy milk"})],
        [call("list_tasks")],
        [{"text": "You have one task: buy milk."}],
    )
    cid = await conversation(live)
    _run_id, events = await send(live, cid, "add a task to buy milk, then list my tasks")
    assert [(e["tool_name"], e["args"]) for e in named(events, "tool_call_start")] == [
        ("add_task", {"title": "buy milk"}),
        ("list_tasks", {}),
    ]
    added, listed = named(events, "tool_result")
    assert added["result"] == {
        "id": 1,
        "title": "buy milk",
        "description": None,
        "completed": False,
    }
    assert listed["result"] == {"tasks": [added["result"]], "count": 1}
    assert kinds(events)[-2:] == ["done", "[DONE]"]
    store = live.services.store
    assert [t.title for t in await store.list_tasks("alice")] == ["buy milk"]
    assert await store.list_tasks("bob") == []
    tools = {t.name: t for t in live.services.tools.all()}
    assert {n for n, t in tools.items() if t.server == "todo"} == {
        "add_task",
        "list_tasks",
        "update_task",
        "complete_task",
        "delete_task",
    }
    assert tools["list_tasks"].read_only and not tools["add_task"].read_only
    assert isinstance(live.services.tools, ToolManager)
    third = scripted.requests[2].messages
    assert [m.role for m in third[-4:]] == ["assistant", "tool", "assistant", "tool"]
    scripted.assert_done()


@pytest.fixture
def settings_overrides(request: pytest.FixtureRequest) -> dict[str, Any]:
    return getattr(request, "param", {})


@pytest.mark.parametrize("settings_overrides", [{"approvals": "all"}], indirect=True)
async def test_with_approvals_on_the_run_waits_until_approved_over_http(
    live: Live, scripted: ScriptedProvider
) -> None:
    scripted.enqueue([call("add_task", {"title": "buy milk"}, "c1")], [{"text": "Added."}])
    cid = await conversation(live)
    run_id, first = await send(live, cid, "add milk", stop_after="awaiting_input")
    assert kinds(first)[-2:] == ["tool_approval_required", "awaiting_input"]
    assert named(first, "tool_approval_required")[0]["args"] == {"title": "buy milk"}
    assert await live.services.store.list_tasks("alice") == []
    async with live.client() as http:
        answer = await http.post(f"/api/runs/{run_id}/approvals/c1", json={"approved": True})
    assert answer.status_code == 200
    rest = await rest_of(live, run_id, first)
    assert kinds(rest) == ["tool_approval_resolved", "tool_result", "content", "done", "[DONE]"]
    assert [t.title for t in await live.services.store.list_tasks("alice")] == ["buy milk"]


async def test_a_model_cannot_touch_another_users_task_and_the_attempt_is_audited(
    live: Live, scripted: ScriptedProvider
) -> None:
    store = live.services.store
    bobs = await store.add_task("bob", "bob's secret", None)
    scripted.enqueue(
        [
            call("update_task", {"task_id": bobs.id, "title": "pwned"}, "u1"),
            call("delete_task", {"task_id": bobs.id}, "d1"),
            call("add_task", {"title": "mine", "user_id": "bob"}, "a1"),
        ],
        [{"text": "done"}],
    )
    cid = await conversation(live)
    run_id, first = await send(live, cid, "mess with task 1", stop_after="awaiting_input")
    assert named(first, "tool_approval_required")[0]["tool_call_id"] == "d1"
    await approve(live, run_id, "d1")  # even a person's yes cannot reach bob's task
    async with asyncio.timeout(5):
        events = first + await rest_of(live, run_id, first)
    errors = {e["tool_call_id"]: e["error"] for e in named(events, "tool_error")}
    assert errors == {"u1": f"task {bobs.id} not found", "d1": f"task {bobs.id} not found"}
    assert kinds(events)[-2:] == ["done", "[DONE]"]
    [untouched] = await store.list_tasks("bob")
    assert (untouched.id, untouched.title) == (bobs.id, "bob's secret")
    assert [t.title for t in await store.list_tasks("alice")] == ["mine"]
    async with live.client() as http:
        audit = (await http.get(f"/api/conversations/{cid}/tool-calls")).json()["items"]
    by_call = {row["tool_call_id"]: row for row in audit}
    assert by_call["u1"]["status"] == by_call["d1"]["status"] == "failed"
    assert by_call["d1"]["error"] == f"task {bobs.id} not found"
    assert by_call["d1"]["arguments"] == {"task_id": bobs.id}
    assert by_call["a1"]["status"] == "succeeded"


async def test_under_the_default_policy_delete_task_waits_for_approval_and_deletes_once_approved(
    live: Live, scripted: ScriptedProvider
) -> None:
    task = await live.services.store.add_task("alice", "buy milk", None)
    scripted.enqueue([call("delete_task", {"task_id": task.id}, "d1")], [{"text": "Deleted."}])
    cid = await conversation(live)
    run_id, first = await send(live, cid, "delete the milk task", stop_after="awaiting_input")
    assert kinds(first)[-2:] == ["tool_approval_required", "awaiting_input"]
    assert named(first, "tool_approval_required")[0]["tool_name"] == "delete_task"
    assert [t.id for t in await live.services.store.list_tasks("alice")] == [task.id]
    await approve(live, run_id, "d1")
    async with asyncio.timeout(5):
        rest = await rest_of(live, run_id, first)
    assert kinds(rest) == ["tool_approval_resolved", "tool_result", "content", "done", "[DONE]"]
    assert named(rest, "tool_result")[0]["result"] == {"id": task.id, "deleted": True}
    assert await live.services.store.list_tasks("alice") == []
    scripted.assert_done()


async def test_only_delete_task_is_destructive_and_add_and_list_run_without_asking(
    live: Live, scripted: ScriptedProvider
) -> None:
    flags = {
        t.name: (t.read_only, t.destructive)
        for t in live.services.tools.all()
        if t.server == "todo"
    }
    assert flags == {
        "add_task": (False, False),
        "list_tasks": (True, False),
        "update_task": (False, False),
        "complete_task": (False, False),
        "delete_task": (False, True),
    }
    scripted.enqueue(
        [call("add_task", {"title": "buy milk"}, "a1"), call("list_tasks", {}, "l1")],
        [{"text": "Added."}],
    )
    cid = await conversation(live)
    _, events = await send(live, cid, "add milk and list")
    assert "tool_approval_required" not in kinds(events)
    assert {e["tool_call_id"] for e in named(events, "tool_result")} == {"a1", "l1"}
    assert kinds(events)[-2:] == ["done", "[DONE]"]


async def _deletes_without_asking(live: Live, scripted: ScriptedProvider) -> None:
    task = await live.services.store.add_task("alice", "buy milk", None)
    scripted.enqueue([call("delete_task", {"task_id": task.id}, "d1")], [{"text": "Deleted."}])
    cid = await conversation(live)
    _, events = await send(live, cid, "delete the milk task")
    assert "tool_approval_required" not in kinds(events)
    assert named(events, "tool_result")[0]["result"] == {"id": task.id, "deleted": True}
    assert await live.services.store.list_tasks("alice") == []


@pytest.mark.parametrize("settings_overrides", [{"approvals": "none"}], indirect=True)
async def test_with_approvals_none_delete_task_runs_without_asking(
    live: Live, scripted: ScriptedProvider
) -> None:
    await _deletes_without_asking(live, scripted)


async def test_a_remembered_rule_lets_delete_task_run_without_asking(
    live: Live, scripted: ScriptedProvider
) -> None:
    await live.services.store.add_rule("alice", "tool", "delete_task")
    await _deletes_without_asking(live, scripted)


async def test_bad_arguments_are_a_tool_error_the_model_sees(
    live: Live, scripted: ScriptedProvider
) -> None:
    scripted.enqueue([call("complete_task", {"task_id": "three"}, "c1")], [{"text": "sorry"}])
    cid = await conversation(live)
    _, events = await send(live, cid, "complete three")
    [error] = named(events, "tool_error")
    assert error["error"].startswith("invalid arguments: 'three' is not of type 'integer'")
    assert scripted.requests[1].messages[-1].content.startswith("Error: invalid arguments")


def _cli_env(tmp_path: Path, database_url: str) -> dict[str, str]:
    return {
        "PARLEY_DATABASE_URL": database_url,
        "PARLEY_DATA_DIR": str(tmp_path / "cli"),
        "PARLEY_JWT_SECRET": SECRET,
        "PARLEY_CONFIG": str(tmp_path / "absent.toml"),
    }


async def test_parley_mcp_todo_serves_the_tools_over_stdio_for_the_given_user(
    live: Live, tmp_path: Path, sqlite_url: str
) -> None:
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "parley", "mcp", "todo", "--transport", "stdio", "--user", "carol"],
        env=_cli_env(tmp_path, sqlite_url),
    )
    async with asyncio.timeout(30), Client(params, mode="legacy") as client:
        listed = {t.name: t for t in (await client.list_tools()).tools}
        added = await client.call_tool("add_task", {"title": "from stdio", "user_id": "alice"})
        missing = await client.call_tool("delete_task", {"task_id": 999})
    assert set(listed) == {"add_task", "list_tasks", "update_task", "complete_task", "delete_task"}
    assert listed["list_tasks"].annotations and listed["list_tasks"].annotations.read_only_hint
    assert added.structured_content == {
        "id": 1,
        "title": "from stdio",
        "description": None,
        "completed": False,
    }
    assert missing.is_error
    assert [t.title for t in await live.services.store.list_tasks("carol")] == ["from stdio"]
    assert await live.services.store.list_tasks("alice") == []


def test_parley_mcp_todo_over_stdio_needs_a_user(tmp_path: Path, sqlite_url: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "parley", "mcp", "todo"],
        env=_cli_env(tmp_path, sqlite_url),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode != 0
    assert "--user is required" in done.stderr
    assert done.stdout == ""
