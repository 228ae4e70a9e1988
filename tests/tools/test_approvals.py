"""Approvals: granted, denied, timed out, answered twice, remembered, and durable across a
restart of parley. A tool that needs approval suspends the run until a person answers."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import Live, make_settings, serve
from tests.support.sse import kinds
from tests.tools.conftest import call, conversation, named, rest_of, send

from parley.providers.scripted import ScriptedProvider
from parley.tools.base import FunctionTool, ToolContext
from parley.tools.registry import ToolRegistry

EMAIL = {"to": "bob@example.com", "body": "hi"}
SCHEMA = {
    "type": "object",
    "properties": {"to": {"type": "string"}, "body": {"type": "string"}},
    "required": ["to"],
}


@pytest.fixture
def sent() -> list[dict[str, Any]]:
    return []


def email_tools(sent: list[dict[str, Any]]) -> ToolRegistry:
    async def send_email(args: dict[str, Any], context: ToolContext) -> dict[str, Any]:
        sent.append({**args, "as": context.user_id})
        return {"sent": len(sent)}

    registry = ToolRegistry()
    registry.register(
        FunctionTool(
            "send_email", send_email, input_schema=SCHEMA, server="mail", requires_approval=True
        )
    )
    return registry


@pytest.fixture
def tool_registry(sent: list[dict[str, Any]]) -> ToolRegistry:
    return email_tools(sent)


@pytest.fixture
def settings_overrides(request: pytest.FixtureRequest) -> dict[str, Any]:
    return getattr(request, "param", {})


async def _waiting(
    live: Live, scripted: ScriptedProvider, ident: str = "e1"
) -> tuple[str, str, list[Any]]:
    """Start a run whose first step asks to send an email; return at ``awaiting_input``."""
    scripted.enqueue([call("send_email", EMAIL, ident)], [{"text": "Sent it."}])
    cid = await conversation(live)
    run_id, events = await send(live, cid, "email bob", stop_after="awaiting_input")
    assert kinds(events)[-3:] == ["tool_call_start", "tool_approval_required", "awaiting_input"]
    return cid, run_id, events


async def _answer(live: Live, run_id: str, ident: str = "e1", **body: Any) -> Any:
    async with live.client() as http:
        return await http.post(f"/api/runs/{run_id}/approvals/{ident}", json=body)


async def _audit(live: Live, cid: str) -> list[dict[str, Any]]:
    async with live.client() as http:
        items: list[dict[str, Any]] = (
            await http.get(f"/api/conversations/{cid}/tool-calls")
        ).json()["items"]
    return items


async def test_granted_the_tool_runs_once_and_the_reply_completes(
    live: Live, scripted: ScriptedProvider, sent: list[dict[str, Any]]
) -> None:
    cid, run_id, first = await _waiting(live, scripted)
    required = named(first, "tool_approval_required")[0]
    assert required["tool_name"] == "send_email" and required["args"] == EMAIL
    assert required["expires_at"]
    assert sent == []
    assert (await _audit(live, cid))[0]["status"] == "requires_approval"
    assert (await _answer(live, run_id, approved=True)).status_code == 200
    rest = await rest_of(live, run_id, first)
    assert kinds(rest) == ["tool_approval_resolved", "tool_result", "content", "done", "[DONE]"]
    assert named(rest, "tool_result")[0]["result"] == {"sent": 1}
    assert sent == [{**EMAIL, "as": "alice"}]
    [row] = await _audit(live, cid)
    assert (row["status"], row["approved_by"], row["result"]) == ("succeeded", "alice", {"sent": 1})
    async with live.client() as http:
        convo = (await http.get(f"/api/conversations/{cid}")).json()
    reply = convo["messages"][-1]
    assert reply["status"] == "complete"
    tool_part = next(p for p in reply["parts"] if p["type"] == "dynamic-tool")
    assert (tool_part["state"], tool_part["output"]) == ("output-available", {"sent": 1})
    assert reply["parts"][-1] == {"type": "text", "text": "Sent it."}
    scripted.assert_done()


async def test_denied_the_tool_does_not_run_and_the_model_is_told_why(
    live: Live, scripted: ScriptedProvider, sent: list[dict[str, Any]]
) -> None:
    cid, run_id, first = await _waiting(live, scripted)
    response = await _answer(live, run_id, approved=False, reason="not today")
    assert response.status_code == 200
    rest = await rest_of(live, run_id, first)
    assert kinds(rest) == ["tool_approval_resolved", "tool_error", "content", "done", "[DONE]"]
    assert "not today" in named(rest, "tool_error")[0]["error"]
    assert named(rest, "tool_approval_resolved")[0]["by"] == "alice"
    assert sent == []
    told = scripted.requests[1].messages[-1]
    assert told.role == "tool" and "denied" in told.content and "not today" in told.content
    [row] = await _audit(live, cid)
    assert (row["status"], row["approved_by"]) == ("denied", "alice")


@pytest.mark.parametrize("outcome", ["approved", "denied", "cancelled"])
async def test_an_answered_or_cancelled_approval_leaves_no_timer_behind(
    live: Live, scripted: ScriptedProvider, outcome: str
) -> None:
    """Each waiting run arms a timer for its approval's expiry; one left armed after the answer
    is kept for ``approval_timeout`` and then reads the database for nothing (the 30-minute soak
    grew by one per approval)."""
    runs = live.services.runs
    _, run_id, first = await _waiting(live, scripted)
    assert f"expiry:{run_id}" in runs._timers
    if outcome == "cancelled":
        async with live.client() as http:
            assert (await http.post(f"/api/runs/{run_id}/cancel")).status_code == 200
        scripted.turns.clear()
    else:
        response = await _answer(live, run_id, approved=outcome == "approved")
        assert response.status_code == 200
    assert kinds(await rest_of(live, run_id, first))[-2:] == ["done", "[DONE]"]
    assert runs._timers == {}


@pytest.mark.parametrize("settings_overrides", [{"approval_timeout": 0.3}], indirect=True)
async def test_an_unanswered_approval_times_out_as_a_denial(
    live: Live, scripted: ScriptedProvider, sent: list[dict[str, Any]]
) -> None:
    cid, run_id, first = await _waiting(live, scripted)
    async with asyncio.timeout(5):
        rest = await rest_of(live, run_id, first)
    assert kinds(rest) == ["tool_approval_resolved", "tool_error", "content", "done", "[DONE]"]
    resolved = named(rest, "tool_approval_resolved")[0]
    assert (resolved["reason"], resolved["by"]) == ("timed out", "timeout")
    assert sent == []
    [row] = await _audit(live, cid)
    assert (row["status"], row["approved_by"]) == ("denied", "timeout")
    assert (await _answer(live, run_id, approved=True)).status_code == 409


async def test_a_second_answer_is_a_409_and_the_tool_runs_once(
    live: Live, scripted: ScriptedProvider, sent: list[dict[str, Any]]
) -> None:
    _, run_id, first = await _waiting(live, scripted)
    answers = await asyncio.gather(
        _answer(live, run_id, approved=True), _answer(live, run_id, approved=False)
    )
    assert sorted(a.status_code for a in answers) == [200, 409]
    conflict = next(a for a in answers if a.status_code == 409)
    assert conflict.json()["error"]["code"] == "ERR_CONFLICT"
    rest = await rest_of(live, run_id, first)
    assert kinds(rest)[-2:] == ["done", "[DONE]"]
    late = await _answer(live, run_id, approved=True)
    assert late.status_code == 409
    assert len(sent) == (1 if answers[0].status_code == 200 else 0)


async def test_remember_tool_skips_the_question_until_the_rule_is_deleted(
    live: Live, scripted: ScriptedProvider, sent: list[dict[str, Any]]
) -> None:
    cid, run_id, first = await _waiting(live, scripted)
    assert (await _answer(live, run_id, approved=True, remember="tool")).status_code == 200
    await rest_of(live, run_id, first)
    async with live.client() as http:
        rules = (await http.get("/api/approval-rules")).json()["items"]
        assert [(r["scope"], r["name"]) for r in rules] == [("tool", "send_email")]
        async with live.client("bob") as bob:
            assert (await bob.get("/api/approval-rules")).json()["items"] == []
            assert (await bob.delete(f"/api/approval-rules/{rules[0]['id']}")).status_code == 404
    scripted.enqueue([call("send_email", EMAIL, "e2")], [{"text": "Sent again."}])
    _, events = await send(live, cid, "again")
    assert "tool_approval_required" not in kinds(events)
    assert named(events, "tool_result")[0]["result"] == {"sent": 2}
    async with live.client() as http:
        assert (await http.delete(f"/api/approval-rules/{rules[0]['id']}")).status_code == 204
        assert (await http.get("/api/approval-rules")).json()["items"] == []
    scripted.enqueue([call("send_email", EMAIL, "e3")])
    _, events = await send(live, cid, "once more", stop_after="awaiting_input")
    assert kinds(events)[-2:] == ["tool_approval_required", "awaiting_input"]


async def test_remember_server_covers_every_tool_of_that_server(
    live: Live, scripted: ScriptedProvider, sent: list[dict[str, Any]]
) -> None:
    _, run_id, first = await _waiting(live, scripted)
    assert (await _answer(live, run_id, approved=True, remember="server")).status_code == 200
    await rest_of(live, run_id, first)
    rules = await live.services.store.list_rules("alice")
    assert [(r.scope, r.name) for r in rules] == [("server", "mail")]


async def test_remember_server_for_a_tool_of_no_server_is_a_400_and_the_question_stays_open(
    live: Live, scripted: ScriptedProvider, tool_registry: ToolRegistry
) -> None:
    async def shout(args: dict[str, Any], context: ToolContext) -> str:
        return "HELLO"

    tool_registry.register(FunctionTool("shout", shout, requires_approval=True))
    scripted.enqueue([call("shout", {}, "s1")], [{"text": "Shouted."}])
    cid = await conversation(live)
    run_id, first = await send(live, cid, "shout", stop_after="awaiting_input")
    refused = await _answer(live, run_id, "s1", approved=True, remember="server")
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["code"] == "ERR_VALIDATION"
    assert "remember it as 'tool'" in refused.json()["error"]["message"]
    assert (await live.services.store.get_run("alice", run_id)).status == "awaiting"
    assert await live.services.store.list_rules("alice") == []
    assert (await _answer(live, run_id, "s1", approved=True, remember="tool")).status_code == 200
    rest = await rest_of(live, run_id, first)
    assert kinds(rest)[-3:] == ["content", "done", "[DONE]"]
    rules = await live.services.store.list_rules("alice")
    assert [(r.scope, r.name) for r in rules] == [("tool", "shout")]


@pytest.fixture
def gate() -> asyncio.Event:
    return asyncio.Event()


@pytest.fixture
def slow_registry(sent: list[dict[str, Any]], gate: asyncio.Event) -> ToolRegistry:
    registry = email_tools(sent)

    async def slow(args: dict[str, Any], context: ToolContext) -> str:
        await gate.wait()
        return "slow done"

    registry.register(FunctionTool("slow", slow))
    return registry


async def test_an_answer_that_comes_while_the_step_still_runs_resumes_the_run_at_once(
    tmp_path: Path,
    sqlite_url: str,
    scripted: ScriptedProvider,
    slow_registry: ToolRegistry,
    gate: asyncio.Event,
    sent: list[dict[str, Any]],
) -> None:
    settings = make_settings(tmp_path, sqlite_url)
    scripted.enqueue([call("send_email", EMAIL, "e1"), call("slow", {}, "s1")], [{"text": "ok"}])
    async for live in serve(settings, scripted, slow_registry):
        cid = await conversation(live)
        run_id, first = await send(live, cid, "both", stop_after="tool_approval_required")
        assert (await _answer(live, run_id, approved=True)).status_code == 200
        gate.set()
        async with asyncio.timeout(5):
            rest = await rest_of(live, run_id, first)
        assert kinds(rest)[-2:] == ["done", "[DONE]"]
        assert sent == [{**EMAIL, "as": "alice"}]
        assert {e["tool_name"] for e in named(first + rest, "tool_result")} == {
            "send_email",
            "slow",
        }


async def test_a_waiting_run_survives_a_restart_and_continues_when_approved(
    tmp_path: Path, sqlite_url: str, sent: list[dict[str, Any]]
) -> None:
    """The first parley stops while the run waits; a new one on the same database resumes it."""
    settings = make_settings(tmp_path, sqlite_url)
    before = ScriptedProvider(
        turns=[[{"text": "Let me send that. "}, call("send_email", EMAIL, "e1")]]
    )
    first_app = serve(settings, before, email_tools(sent))
    live = await anext(first_app)
    cid = await conversation(live)
    run_id, _first = await send(live, cid, "email bob", stop_after="awaiting_input")
    await first_app.aclose()

    after = ScriptedProvider(turns=[[{"text": "Sent it."}]])
    second_app = serve(settings, after, email_tools(sent))
    live = await anext(second_app)
    try:
        async with live.client() as http:
            assert (await http.get(f"/api/runs/{run_id}")).json()["status"] == "awaiting"
            pending = (await http.get(f"/api/conversations/{cid}")).json()
        assert (await _answer(live, run_id, approved=True)).status_code == 200
        assert (await _answer(live, run_id, approved=True)).status_code == 409
        async with asyncio.timeout(5):
            rest = await rest_of(live, run_id, [])
        assert kinds(rest)[-4:] == ["tool_result", "content", "done", "[DONE]"]
        assert sent == [{**EMAIL, "as": "alice"}]
        async with live.client() as http:
            convo = (await http.get(f"/api/conversations/{cid}")).json()
            assert (await http.get(f"/api/runs/{run_id}")).json()["status"] == "complete"
    finally:
        await second_app.aclose()
    reply = convo["messages"][-1]
    assert reply["status"] == "complete"
    assert [p["type"] for p in reply["parts"] if p["type"] != "step-start"] == [
        "text",
        "dynamic-tool",
        "text",
    ]
    assert reply["parts"][-1]["text"] == "Sent it."
    history = after.requests[0].messages
    assert [m.role for m in history] == ["user", "assistant", "tool"]
    assert history[1].content == "Let me send that. "
    assert pending["messages"][-1]["status"] == "awaiting"
