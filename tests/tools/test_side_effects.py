"""A tool not marked read-only leaves a side effect on record: regenerating, editing or forking
from before it answers with ``side_effects``, so the person knows it will not be undone."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.conftest import Live
from tests.support.sse import collect
from tests.tools.conftest import approve, call, conversation, named, rest_of, send

from parley.providers.scripted import ScriptedProvider


async def _with_effects(live: Live, scripted: ScriptedProvider) -> tuple[str, dict[str, Any]]:
    """A reply that added a task (a side effect) and listed tasks (read-only)."""
    scripted.enqueue(
        [call("add_task", {"title": "milk"}, "a1"), call("list_tasks", {}, "l1")],
        [{"text": "Added milk."}],
    )
    cid = await conversation(live)
    await send(live, cid, "add milk")
    async with live.client() as http:
        convo: dict[str, Any] = (await http.get(f"/api/conversations/{cid}")).json()
    return cid, convo


def _names(effects: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["tool_name"], e["tool_call_id"]) for e in effects]


async def test_regenerating_a_reply_that_added_a_task_names_that_side_effect(
    live: Live, scripted: ScriptedProvider
) -> None:
    cid, convo = await _with_effects(live, scripted)
    _user, reply = convo["messages"]
    scripted.enqueue([{"text": "Again."}])
    async with live.client() as http:
        regen = await http.post(
            f"/api/conversations/{cid}/messages/{reply['id']}/regenerate", json={"stream": False}
        )
    effects = regen.json()["side_effects"]
    assert _names(effects) == [("add_task", "a1")]
    assert effects[0]["arguments"] == {"title": "milk"}
    assert effects[0]["message_id"] == reply["id"]
    assert effects[0]["server"] == "todo" and effects[0]["at"]


async def test_editing_the_user_message_streams_the_side_effects_in_start(
    live: Live, scripted: ScriptedProvider
) -> None:
    cid, convo = await _with_effects(live, scripted)
    user = convo["messages"][0]
    scripted.enqueue([{"text": "Edited."}])
    async with live.client() as http:
        _, events = await collect(
            http,
            "PUT",
            f"/api/conversations/{cid}/messages/{user['id']}",
            json_body={"content": "add oat milk"},
        )
    assert _names(named(events, "start")[0]["side_effects"]) == [("add_task", "a1")]


async def test_forking_from_before_the_call_names_it_and_from_after_does_not(
    live: Live, scripted: ScriptedProvider
) -> None:
    cid, convo = await _with_effects(live, scripted)
    user, reply = convo["messages"]
    async with live.client() as http:
        before = (
            await http.post(f"/api/conversations/{cid}/fork", json={"message_id": user["id"]})
        ).json()
        after = (
            await http.post(f"/api/conversations/{cid}/fork", json={"message_id": reply["id"]})
        ).json()
    assert _names(before["side_effects"]) == [("add_task", "a1")]
    assert after["side_effects"] == []


async def test_failed_and_read_only_calls_are_not_side_effects(
    live: Live, scripted: ScriptedProvider
) -> None:
    scripted.enqueue(
        [call("delete_task", {"task_id": 404}, "d1"), call("list_tasks", {}, "l1")],
        [{"text": "Nothing to delete."}],
    )
    cid = await conversation(live)
    run_id, first = await send(live, cid, "delete 404", stop_after="awaiting_input")
    await approve(live, run_id, "d1")  # delete_task is destructive: it asks first
    async with asyncio.timeout(5):
        await rest_of(live, run_id, first)
    async with live.client() as http:
        reply = (await http.get(f"/api/conversations/{cid}")).json()["messages"][-1]
        scripted.enqueue([{"text": "Again."}])
        regen = await http.post(
            f"/api/conversations/{cid}/messages/{reply['id']}/regenerate", json={"stream": False}
        )
    assert regen.json().get("side_effects", []) == []
