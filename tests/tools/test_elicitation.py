"""Elicitation: an MCP server's ``elicitation/create`` reaches the person as an ``elicitation``
event, and the answer (checked against the form's schema) goes back to that server."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from tests.conftest import Live
from tests.support.sse import Event, kinds
from tests.tools.conftest import call, conversation, named, rest_of, send, toy_server

from parley.providers.scripted import ScriptedProvider


@pytest.fixture
def settings_overrides(request: pytest.FixtureRequest) -> dict[str, Any]:
    return {"mcp_servers": [toy_server()], **getattr(request, "param", {})}


async def _asked(live: Live, scripted: ScriptedProvider) -> tuple[str, list[Event], dict[str, Any]]:
    scripted.enqueue([call("delete_file", {"path": "/tmp/old.txt"}, "d1")], [{"text": "ok"}])
    cid = await conversation(live)
    run_id, first = await send(live, cid, "delete old.txt", stop_after="elicitation")
    return run_id, first, named(first, "elicitation")[0]


async def _answer(live: Live, run_id: str, elicitation_id: str, **body: Any) -> Any:
    async with live.client() as http:
        return await http.post(f"/api/runs/{run_id}/elicitations/{elicitation_id}", json=body)


async def test_the_question_reaches_the_person_and_a_valid_answer_reaches_the_server(
    live: Live, scripted: ScriptedProvider
) -> None:
    run_id, first, asked = await _asked(live, scripted)
    assert asked["message"] == "Really delete /tmp/old.txt?"
    assert asked["tool_call_id"] == "d1" and asked["server"] == "toy"
    schema = asked["requested_schema"]
    assert schema["properties"]["confirm"]["type"] == "boolean"
    assert schema["required"] == ["confirm"]
    wrong = await _answer(
        live, run_id, asked["elicitation_id"], action="accept", content={"confirm": "yes"}
    )
    assert wrong.status_code == 422
    assert wrong.json()["error"]["code"] == "ERR_VALIDATION"
    pending = await live.services.store.pending_for_run("alice", run_id)
    assert [(p.kind, p.status) for p in pending] == [("elicitation", "pending")]
    content = {"confirm": True, "reason": "stale"}
    right = await _answer(live, run_id, asked["elicitation_id"], action="accept", content=content)
    assert right.status_code == 200
    again = await _answer(live, run_id, asked["elicitation_id"], action="decline")
    assert again.status_code == 409
    rest = await rest_of(live, run_id, first)
    assert kinds(rest) == ["elicitation_resolved", "tool_result", "content", "done", "[DONE]"]
    assert named(rest, "elicitation_resolved")[0]["action"] == "accept"
    assert named(rest, "tool_result")[0]["result"] == {"result": "deleted /tmp/old.txt (stale)"}


async def test_another_user_cannot_answer_the_question(
    live: Live, scripted: ScriptedProvider
) -> None:
    run_id, first, asked = await _asked(live, scripted)
    async with live.client("bob") as bob:
        stolen = await bob.post(
            f"/api/runs/{run_id}/elicitations/{asked['elicitation_id']}", json={"action": "decline"}
        )
    assert stolen.status_code == 404
    await _answer(live, run_id, asked["elicitation_id"], action="decline")
    rest = await rest_of(live, run_id, first)
    assert named(rest, "tool_result")[0]["result"] == {"result": "kept /tmp/old.txt (decline)"}


@pytest.mark.parametrize("settings_overrides", [{"approval_timeout": 0.3}], indirect=True)
async def test_an_unanswered_question_times_out_as_cancel(
    live: Live, scripted: ScriptedProvider
) -> None:
    run_id, first, _ = await _asked(live, scripted)
    async with asyncio.timeout(5):
        rest = await rest_of(live, run_id, first)
    assert named(rest, "elicitation_resolved")[0]["action"] == "cancel"
    assert named(rest, "tool_result")[0]["result"] == {"result": "kept /tmp/old.txt (cancel)"}
    assert kinds(rest)[-2:] == ["done", "[DONE]"]
    [pending] = await live.services.store.pending_for_run("alice", run_id)
    assert pending.status == "expired"


@pytest.mark.parametrize(
    "settings_overrides",
    [{"tool_timeout": 0.3, "mcp_servers": [toy_server(timeout=0.3)]}],
    indirect=True,
)
async def test_time_spent_waiting_for_the_person_does_not_count_against_the_tool(
    live: Live, scripted: ScriptedProvider
) -> None:
    run_id, first, asked = await _asked(live, scripted)
    await asyncio.sleep(0.5)  # the person takes longer than the tool's own time limit
    await _answer(live, run_id, asked["elicitation_id"], action="accept", content={"confirm": True})
    rest = await rest_of(live, run_id, first)
    assert named(rest, "tool_result")[0]["result"] == {"result": "deleted /tmp/old.txt ()"}
