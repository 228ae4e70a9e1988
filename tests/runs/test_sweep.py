"""The failover sweep fails a run only once its owner has looked dead for the hub's
``confirm_dead_after``: after an outage of Redis every owner looks dead until its next heartbeat,
and a live process's run must not be failed under it (runs/manager.py, ``sweep``)."""

from __future__ import annotations

import pytest
from tests.conftest import Live
from tests.support.sse import collect

from parley.providers.scripted import ScriptedProvider
from parley.store.values import Run


async def _run_of_another_process(live: Live, scripted: ScriptedProvider) -> Run:
    """A running run whose owner is the process ``elsewhere`` (its model waits)."""
    scripted.enqueue([{"text": "one "}, {"wait": "go"}, {"text": "two"}])
    store = live.services.store
    convo = await store.create_conversation("alice")
    async with live.client() as http:
        response, _ = await collect(
            http,
            "POST",
            f"/api/conversations/{convo.id}/messages",
            json_body={"content": "go"},
            stop_after="content",
        )
    run_id = response.headers["x-run-id"]
    live.services.runs._tasks.pop(run_id)  # as if another process drove it
    await store.set_run("alice", run_id, owner="elsewhere")
    return await store.get_run("alice", run_id)


async def test_an_owner_that_looks_dead_only_for_a_moment_keeps_its_run(
    live: Live, scripted: ScriptedProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs, store = live.services.runs, live.services.store
    run = await _run_of_another_process(live, scripted)
    answers = {"elsewhere": False}

    async def alive(instance: str) -> bool:
        return answers.get(instance, False)

    monkeypatch.setattr(runs.hub, "alive", alive)
    monkeypatch.setattr(runs.hub, "confirm_dead_after", 10.0)
    try:
        assert await runs.sweep(clock=100.0) == 0  # first seen dead
        assert await runs.sweep(clock=105.0) == 0
        answers["elsewhere"] = True  # its heartbeat is back
        assert await runs.sweep(clock=111.0) == 0
        answers["elsewhere"] = False  # dead again: the wait starts over
        assert await runs.sweep(clock=112.0) == 0
        assert (await store.get_run("alice", run.id)).status == "running"
        assert await runs.sweep(clock=121.0) == 0
        assert await runs.sweep(clock=122.0) == 1
        assert (await store.get_run("alice", run.id)).status == "interrupted"
    finally:
        scripted.release("go")


async def test_the_in_process_hub_fails_a_dead_owners_run_at_the_first_sweep(
    live: Live, scripted: ScriptedProvider
) -> None:
    run = await _run_of_another_process(live, scripted)
    try:
        assert live.services.runs.hub.confirm_dead_after == 0
        assert await live.services.runs.sweep() == 1
        assert (await live.services.store.get_run("alice", run.id)).status == "interrupted"
    finally:
        scripted.release("go")
