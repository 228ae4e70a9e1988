"""A run reading a burst of chunks lets its readers write as it goes, not after the burst."""

from __future__ import annotations

from tests.conftest import Live

from parley.chat import events as ev
from parley.engine.turn import TurnRequest
from parley.providers.scripted import ScriptedProvider

BURST = 3000


async def _published_when_read(live: Live, scripted: ScriptedProvider) -> list[int]:
    """For each text event a reader gets, how many events the run had published by then."""
    scripted.enqueue([{"text": [f"t{i} " for i in range(BURST)]}])  # no wait between chunks
    convo = await live.services.store.create_conversation("alice")
    runs = live.services.runs
    turn = await runs.start("alice", convo.id, TurnRequest(content="go"))
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
