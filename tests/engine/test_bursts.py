"""A run reading a burst of chunks lets its readers write as it goes, not after the burst."""

from __future__ import annotations

import asyncio

from tests.conftest import Live

from parley.auth import Principal
from parley.chat import events as ev
from parley.engine.requests import TurnRequest
from parley.providers.scripted import ScriptedProvider

BURST = 3000


async def _published_when_read(live: Live, scripted: ScriptedProvider) -> list[int]:
    """For each text event a reader gets, how many events the run had published by then."""
    scripted.enqueue([{"text": [f"t{i} " for i in range(BURST)]}])  # no wait between chunks
    convo = await live.services.store.create_conversation("alice")
    runs = live.services.runs
    turn = await runs.start(Principal("alice"), convo.id, TurnRequest(content="go"))
    hub = runs.hub
    published: list[int] = []
    async for _, event in hub.subscribe(turn.run_id):
        if isinstance(event, ev.TextDelta):
            published.append(len(hub._logs[turn.run_id].events))  # type: ignore[attr-defined]
        if ev.is_terminal(event):
            break
    assert len(published) == BURST
    return published


async def test_the_first_token_is_read_before_the_rest_of_the_burst_is_parsed(
    live: Live, scripted: ScriptedProvider
) -> None:
    published = await _published_when_read(live, scripted)
    assert published[0] <= 3  # start, the first text (and at most one more)


async def test_readers_keep_up_with_a_long_burst(live: Live, scripted: ScriptedProvider) -> None:
    """The run steps aside every few milliseconds of a burst, so a reader (and every other
    stream on the loop) is never a whole burst behind."""
    published = await _published_when_read(live, scripted)
    assert published[BURST // 3] < BURST


async def test_a_cancel_while_the_run_steps_aside_ends_the_reply_as_cancelled(
    live: Live, scripted: ScriptedProvider
) -> None:
    """A reader runs only while the run steps aside, so a cancel sent as the first text is read
    reaches the run there: it must end like any cancel, not leave the reply streaming."""
    scripted.enqueue([{"text": [f"t{i} " for i in range(BURST)]}])
    convo = await live.services.store.create_conversation("alice")
    runs = live.services.runs
    turn = await runs.start(Principal("alice"), convo.id, TurnRequest(content="go"))
    seen: list[ev.EngineEvent] = []
    async with asyncio.timeout(10):
        async for _, event in runs.hub.subscribe(turn.run_id):
            seen.append(event)
            if isinstance(event, ev.TextDelta) and len(seen) == 2:
                assert await runs.hub.send_control(turn.run_id, {"type": "cancel"})
            if ev.is_terminal(event):
                break
    assert isinstance(seen[-1], ev.RunFinished)
    assert seen[-1].finish_reason == "cancelled"
    assert len(seen) < BURST  # it stopped early
    message = await live.services.store.get_message("alice", convo.id, turn.message_id)
    assert message.status == "cancelled"
