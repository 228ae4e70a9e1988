"""Profiles choose the system prompt, model, tools and step limit; ``delegate_to`` offers
other profiles as subagents whose work shows as progress of the parent's tool call."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tests.conftest import Live, make_settings, serve
from tests.support.sse import kinds
from tests.tools.conftest import call, conversation, named, send

from parley.config import Settings
from parley.providers.scripted import ScriptedProvider
from parley.tools.base import FunctionTool, ToolContext
from parley.tools.registry import ToolRegistry

PROFILES = {
    "reader": {"system_prompt": "Read only.", "tools": ["list_tasks"], "max_steps": 2},
    "boss": {"system_prompt": "You delegate.", "tools": [], "delegate_to": ["todo"]},
    "qualified": {"tools": ["todo__*"]},
}


@pytest.fixture
def settings_overrides(request: pytest.FixtureRequest) -> dict[str, Any]:
    return {"profiles": PROFILES, **getattr(request, "param", {})}


def offered(scripted: ScriptedProvider, index: int = 0) -> list[str]:
    return sorted(t.name for t in scripted.requests[index].tools)


TODO_TOOLS = ["add_task", "complete_task", "delete_task", "list_tasks", "update_task"]


async def test_a_profile_sets_the_prompt_and_the_tools_the_model_sees(
    live: Live, scripted: ScriptedProvider
) -> None:
    scripted.enqueue([{"text": "hi"}], [{"text": "hi"}], [{"text": "hi"}], [{"text": "hi"}])
    for profile in ("reader", "todo", "qualified", "generalist"):
        cid = await conversation(live, profile=profile)
        await send(live, cid, "hello")
    reader, todo, qualified, generalist = scripted.requests
    assert [t.name for t in reader.tools] == ["list_tasks"]
    assert (reader.messages[0].role, reader.messages[0].content) == ("system", "Read only.")
    assert sorted(t.name for t in todo.tools) == TODO_TOOLS
    assert todo.messages[0].content.startswith("You are a task assistant.")
    assert sorted(t.name for t in qualified.tools) == TODO_TOOLS
    assert sorted(t.name for t in generalist.tools) == TODO_TOOLS  # no hidden agent__ tools


async def test_max_steps_bounds_the_tool_loop_and_says_why_it_stopped(
    live: Live, scripted: ScriptedProvider
) -> None:
    scripted.enqueue([call("list_tasks", {}, "l1")], [call("list_tasks", {}, "l2")])
    cid = await conversation(live, profile="reader")
    _, events = await send(live, cid, "loop forever")
    assert len(named(events, "tool_result")) == 2
    assert kinds(events)[-3:] == ["notice", "done", "[DONE]"]
    notice = named(events, "notice")[0]
    assert notice["code"] == "max_steps"
    assert notice["message"].startswith("Stopped after 2 steps")
    assert named(events, "done")[0]["finish_reason"] == "max_steps"
    scripted.assert_done()
    async with live.client() as http:
        reply = (await http.get(f"/api/conversations/{cid}")).json()["messages"][-1]
    assert reply["parts"][-1] == {
        "type": "data-notice",
        "data": {"code": "max_steps", "message": notice["message"]},
    }


async def test_an_unknown_profile_is_refused(live: Live) -> None:
    cid = await conversation(live)
    async with live.client() as http:
        response = await http.post(
            f"/api/conversations/{cid}/messages", json={"content": "x", "profile": "nope"}
        )
    assert response.status_code == 400


def _delegation(scripted: ScriptedProvider) -> None:
    scripted.enqueue(
        [
            call("agent__todo", {"task": "add milk"}, "a1"),
            {"usage": {"prompt_tokens": 10, "completion_tokens": 1}},
        ],
        [
            call("add_task", {"title": "milk"}, "t1"),
            {"usage": {"prompt_tokens": 5, "completion_tokens": 1}},
        ],
        [{"text": ["Added ", "milk."]}, {"usage": {"prompt_tokens": 6, "completion_tokens": 2}}],
        [{"text": "Done."}, {"usage": {"prompt_tokens": 20, "completion_tokens": 3}}],
    )


async def test_a_delegated_task_runs_as_a_subagent_nested_under_the_parent_call(
    live: Live, scripted: ScriptedProvider
) -> None:
    _delegation(scripted)
    cid = await conversation(live, profile="boss")
    _, events = await send(live, cid, "please add milk to my list")
    assert offered(scripted, 0) == ["agent__todo"]
    sub = scripted.requests[1]
    assert [m.role for m in sub.messages] == ["system", "user"]
    assert sub.messages[1].content == "add milk"
    assert sorted(t.name for t in sub.tools) == TODO_TOOLS
    assert [e["tool_name"] for e in named(events, "tool_call_start")] == ["agent__todo"]
    progress = [p["message"] for p in named(events, "tool_progress") if p["tool_call_id"] == "a1"]
    assert progress == ["[todo] calls add_task", "[todo] add_task done", "Added ", "milk."]
    assert named(events, "tool_result") == [
        {
            "type": "tool_result",
            "tool_call_id": "a1",
            "tool_name": "agent__todo",
            "result": "Added milk.",
        }
    ]
    assert named(events, "done")[0]["tokensUsed"] == {"prompt": 41, "completion": 7, "total": 48}
    assert [t.title for t in await live.services.store.list_tasks("alice")] == ["milk"]
    message_id = named(events, "start")[0]["message_id"]
    async with live.client() as http:
        audit = (await http.get(f"/api/conversations/{cid}/tool-calls")).json()["items"]
        convo = (await http.get(f"/api/conversations/{cid}")).json()
    assert {(r["tool_name"], r["status"], r["message_id"]) for r in audit} == {
        ("agent__todo", "succeeded", message_id),
        ("add_task", "succeeded", message_id),
    }
    assert convo["usage"]["total_tokens"] == 48
    assert [m["role"] for m in convo["messages"]] == ["user", "assistant"]
    scripted.assert_done()


@pytest.mark.parametrize("settings_overrides", [{"approvals": "all"}], indirect=True)
async def test_a_subagent_cannot_ask_for_approval_and_says_so(
    live: Live, scripted: ScriptedProvider
) -> None:
    await live.services.store.add_rule("alice", "tool", "agent__todo")
    scripted.enqueue(
        [call("agent__todo", {"task": "add milk"}, "a1")],
        [call("add_task", {"title": "milk"}, "t1")],
        [{"text": "I will ask."}],
    )
    cid = await conversation(live, profile="boss")
    _run_id, events = await send(live, cid, "add milk")
    [error] = named(events, "tool_error")
    assert error["tool_call_id"] == "a1"
    assert "needed approval for add_task" in error["error"]
    assert "tool_approval_required" not in kinds(events)
    assert kinds(events)[-2:] == ["done", "[DONE]"]
    assert await live.services.store.list_tasks("alice") == []
    assert await live.services.store.pending_in_conversation("alice", cid) == []
    async with live.client() as http:
        audit = (await http.get(f"/api/conversations/{cid}/tool-calls")).json()["items"]
    assert {r["tool_name"]: r["status"] for r in audit}["add_task"] == "denied"


async def test_delegate_tools_are_registered_in_a_registry_the_caller_gives(
    tmp_path: Path, sqlite_url: str, scripted: ScriptedProvider
) -> None:
    registry = ToolRegistry()

    async def list_tasks(args: dict[str, Any], context: ToolContext) -> list[str]:
        return []

    registry.register(FunctionTool("list_tasks", list_tasks, read_only=True))
    settings = make_settings(tmp_path, sqlite_url, profiles=PROFILES)
    async for live in serve(settings, scripted, registry):
        tool = live.services.tools.get("agent__todo")
        assert tool is not None and tool.hidden
        assert [t.name for t in registry.select(["*"])] == ["list_tasks"]


def test_the_example_config_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    example = Path(__file__).parents[2] / "examples" / "parley.toml"
    monkeypatch.setenv("PARLEY_CONFIG", str(example))
    settings = Settings()
    assert [(s.name, s.enabled) for s in settings.mcp_servers] == [
        ("time", True),
        ("tasks", False),
        ("files", False),
    ]
    assert settings.mcp_servers[1].require_approval == ["delete_task", "update_task"]
    assert settings.profiles["assistant"].delegate_to == ["todo", "clock"]
    assert settings.profiles["clock"].tools == ["time__*"]
