"""The in-process run hub: replay and live delivery in order, and a finished run's log that the
garbage collector does not have to walk."""

from __future__ import annotations

import asyncio
import gc

from parley.chat import events as ev
from parley.runs.memory import MemoryRunHub

PUBLISHED: list[ev.EngineEvent] = [
    ev.RunStarted(
        run_id="run_1", conversation_id="c", user_message_id="u", message_id="m", model="x/y"
    ),
    *[ev.TextDelta(content=f"t{i}") for i in range(200)],
    ev.ReasoningDelta(content="hmm"),
    ev.ToolCallStarted(tool_call_id="call_1", tool_name="add"),
    ev.ToolCallArgsDelta(tool_call_id="call_1", delta='{"a":'),
    ev.ToolCallArgsDelta(tool_call_id="call_1", delta="1}"),
    ev.ToolCallReady(tool_call_id="call_1", tool_name="add", args={"a": 1}),
    ev.RunFinished(message_id="m", finish_reason="stop"),
]


async def _all(hub: MemoryRunHub, after: int = 0) -> list[tuple[int, ev.EngineEvent]]:
    return [item async for item in hub.subscribe("run_1", after)]


async def test_replay_gives_back_every_event_with_its_sequence_number() -> None:
    hub = MemoryRunHub()
    await hub.open("run_1")
    for event in PUBLISHED:
        await hub.publish("run_1", event)
    assert await _all(hub) == list(enumerate(PUBLISHED, start=1))
    assert await _all(hub, after=200) == list(enumerate(PUBLISHED, start=1))[200:]
    assert await hub.is_finished("run_1")


async def test_live_subscribers_see_each_event_as_it_is_published() -> None:
    hub = MemoryRunHub()
    await hub.open("run_1")
    readers = [asyncio.create_task(_all(hub)) for _ in range(3)]
    await asyncio.sleep(0)
    for event in PUBLISHED:
        await hub.publish("run_1", event)
        await asyncio.sleep(0)
    for reader in readers:
        assert await asyncio.wait_for(reader, 2) == list(enumerate(PUBLISHED, start=1))


async def test_deltas_are_never_tracked_by_the_collector() -> None:
    """A run's log stays for ``ttl`` after it ends; every full collection (which pauses every
    stream) would walk its deltas if they were kept as models, and every delta the collector
    tracks, even until its next young collection, counts towards that collection."""
    hub = MemoryRunHub()
    await hub.open("run_1")
    gc.disable()  # no collection may untrack anything meanwhile
    try:
        for event in PUBLISHED:
            await hub.publish("run_1", event)
        kept = hub._logs["run_1"].events
        tracked = sum(1 for item in kept if gc.is_tracked(item))
    finally:
        gc.enable()
    assert len(kept) == len(PUBLISHED)
    assert tracked == 4, tracked  # the start, the tool call's start and end, the finish


async def test_deltas_read_back_as_they_were_published() -> None:
    hub = MemoryRunHub()
    await hub.open("run_1")
    odd = [
        ev.TextDelta(content=""),
        ev.TextDelta(content="t:3x"),
        ev.ReasoningDelta(content="a1:"),
        ev.ToolCallArgsDelta(tool_call_id="call:12:x", delta='{"a": "b:c"}'),
        ev.ToolCallArgsDelta(tool_call_id="", delta=""),
        ev.RunFinished(message_id="m", finish_reason="stop"),
    ]
    for event in odd:
        await hub.publish("run_1", event)
    assert [e async for _, e in hub.subscribe("run_1")] == odd


async def test_a_subscriber_that_goes_away_leaves_no_waiter_behind() -> None:
    hub = MemoryRunHub()
    await hub.open("run_1")
    readers = [asyncio.create_task(_all(hub)) for _ in range(100)]
    await asyncio.sleep(0.01)
    for reader in readers:
        reader.cancel()
    await asyncio.gather(*readers, return_exceptions=True)
    assert hub._logs["run_1"].waiters == []


async def test_a_finished_run_is_forgotten_after_ttl_unless_it_was_reopened() -> None:
    hub = MemoryRunHub(ttl=0.05)
    finished = ev.RunFinished(message_id="m", finish_reason="stop")
    for run_id in ("run_old", "run_reopened"):
        await hub.open(run_id)
        await hub.publish(run_id, finished)
    await hub.open("run_reopened")  # e.g. resumed after an approval: running again
    await asyncio.sleep(0.1)
    await hub.open("run_new")  # starting a run is when the hub forgets
    assert not await hub.exists("run_old")
    assert await hub.exists("run_reopened")
    await hub.publish("run_reopened", finished)
    await asyncio.sleep(0.1)
    assert not await hub.exists("run_reopened")
