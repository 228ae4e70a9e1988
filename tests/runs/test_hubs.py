"""The run hub contract on both hubs: a resume at or past the end of a finished run gets its
terminal event alone and ends at once, and a log the hub lost goes on numbering after the run's
stored id (runs/base.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from tests.conftest import REDIS_URL
from tests.support.wait import until

from parley.chat import events as ev
from parley.chat.ids import new_id
from parley.runs.base import RunHub
from parley.runs.memory import MemoryRunHub, RunLog
from parley.runs.redis import PREFIX, RedisRunHub, connect

DEADLINE = 5.0
START = ev.RunStarted(
    run_id="r", conversation_id="c", user_message_id="u", message_id="m", model="x/y"
)
DONE = ev.RunFinished(message_id="m", finish_reason="stop")
RUN = [START, ev.TextDelta(content="a"), ev.TextDelta(content="b"), DONE]


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def hub(request: pytest.FixtureRequest) -> AsyncIterator[RunHub]:
    if request.param == "memory":
        yield MemoryRunHub()
        return
    redis_hub = RedisRunHub(connect(REDIS_URL), instance=new_id("test"), block_ms=200)
    await redis_hub.start()
    try:
        yield redis_hub
    finally:
        await redis_hub.aclose()


@pytest.fixture
async def run_id() -> AsyncIterator[str]:
    run = new_id("run")
    yield run
    client = aioredis.from_url(REDIS_URL)
    try:
        await client.delete(*(f"{PREFIX}:run:{run}:{part}" for part in ("events", "done", "live")))
    except (aioredis.ConnectionError, OSError):
        pass  # no Redis here: the memory hub's test left nothing behind
    finally:
        await client.aclose()


async def _finished(hub: RunHub, run_id: str) -> None:
    await hub.open(run_id)
    for event in RUN:
        await hub.publish(run_id, event)


async def _read(hub: RunHub, run_id: str, after: int) -> list[tuple[int, ev.EngineEvent]]:
    async with asyncio.timeout(DEADLINE):
        return [item async for item in hub.subscribe(run_id, after)]


@pytest.mark.parametrize("after", [0, 2])
async def test_a_resume_before_the_end_gets_every_event_after_it(
    hub: RunHub, run_id: str, after: int
) -> None:
    await _finished(hub, run_id)
    assert await _read(hub, run_id, after) == list(enumerate(RUN, start=1))[after:]


@pytest.mark.parametrize("after", [4, 5, 1_000])
async def test_a_resume_at_or_past_the_end_of_a_finished_run_gets_the_end_alone_at_once(
    hub: RunHub, run_id: str, after: int
) -> None:
    await _finished(hub, run_id)
    assert await _read(hub, run_id, after) == [(4, DONE)]


async def test_a_reader_past_the_end_of_a_live_run_ends_when_the_run_does(
    hub: RunHub, run_id: str
) -> None:
    await hub.open(run_id)
    await hub.publish(run_id, START)
    reader = asyncio.create_task(_read(hub, run_id, 1_000))
    for event in RUN[1:]:
        await hub.publish(run_id, event)
    assert await reader == [(4, DONE)]


async def test_a_log_the_hub_lost_goes_on_after_the_stored_id(hub: RunHub, run_id: str) -> None:
    await hub.open(run_id, after=7)  # a restarted process reopens a run suspended at id 7
    reader = asyncio.create_task(_read(hub, run_id, 7))
    await hub.publish(run_id, ev.TextDelta(content="c"))
    await hub.publish(run_id, DONE)
    assert await reader == [(8, ev.TextDelta(content="c")), (9, DONE)]
    assert await hub.last_id(run_id) == 9


async def test_reopening_a_log_the_hub_holds_keeps_its_ids(hub: RunHub, run_id: str) -> None:
    await hub.open(run_id)
    await hub.publish(run_id, START)
    await hub.open(run_id, after=7)  # resumed in the same process: the log is still here
    await hub.publish(run_id, DONE)
    assert await _read(hub, run_id, 0) == [(1, START), (2, DONE)]
    assert await hub.last_id(run_id) == 2


async def test_last_id_is_zero_for_a_run_the_hub_does_not_hold(hub: RunHub, run_id: str) -> None:
    assert await hub.last_id(run_id) == 0
    assert not await hub.exists(run_id)


async def test_a_reader_gets_the_events_that_came_while_it_was_busy() -> None:
    """Events appended while a reader's consumer works on the previous one are not missed (no
    wake-up is lost between the reader's last look and its wait)."""
    log = RunLog()
    got: list[int] = []
    proceed = asyncio.Event()

    async def read() -> None:
        async for event_id, _ in log.follow(0):
            got.append(event_id)
            await proceed.wait()  # a consumer busy with the event

    reader = asyncio.create_task(read())
    log.append(ev.TextDelta(content="a"))
    await until(lambda: got == [1])
    log.append(ev.TextDelta(content="b"))
    log.append(ev.TextDelta(content="c"))
    proceed.set()
    await until(lambda: got == [1, 2, 3])
    reader.cancel()
