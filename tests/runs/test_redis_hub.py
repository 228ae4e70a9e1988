"""The Redis hub of a run this process drives: its own readers read memory, other processes'
read Redis, with the same ids; a connection to Redis cut mid-run loses nothing; a run that goes
on in another process is followed there (runs/redis.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from tests.conftest import REDIS_URL
from tests.support.tcp_proxy import TcpProxy, proxy_to
from tests.support.wait import until

from parley.chat import events as ev
from parley.chat.ids import new_id
from parley.runs.redis import PREFIX, RedisRunHub, connect

pytestmark = pytest.mark.redis
DEADLINE = 10.0
START = ev.RunStarted(
    run_id="r", conversation_id="c", user_message_id="u", message_id="m", model="x/y"
)
DONE = ev.RunFinished(message_id="m", finish_reason="stop")


async def _nothing(message: dict[str, object]) -> None:
    return None


async def _hub(url: str = REDIS_URL) -> RedisRunHub:
    hub = RedisRunHub(connect(url), instance=new_id("test"), block_ms=200, owner_ttl=5)
    await hub.start()
    return hub


@pytest.fixture
async def run_id() -> AsyncIterator[str]:
    run = new_id("run")
    yield run
    client = aioredis.from_url(REDIS_URL)
    await client.delete(*(f"{PREFIX}:run:{run}:{part}" for part in ("events", "done", "live")))
    await client.aclose()


@pytest.fixture
async def proxy() -> AsyncIterator[TcpProxy]:
    async with proxy_to(REDIS_URL) as started:
        yield started


class Reader:
    def __init__(self, hub: RedisRunHub, run_id: str, after: int = 0) -> None:
        self.items: list[tuple[int, ev.EngineEvent]] = []
        self.task = asyncio.create_task(self._read(hub, run_id, after))

    async def _read(self, hub: RedisRunHub, run_id: str, after: int) -> None:
        async for item in hub.subscribe(run_id, after):
            self.items.append(item)

    async def done(self) -> list[tuple[int, ev.EngineEvent]]:
        async with asyncio.timeout(DEADLINE):
            await self.task
        return self.items


def _deltas(start: int, count: int) -> list[ev.EngineEvent]:
    return [ev.TextDelta(content=str(n)) for n in range(start, start + count)]


async def test_readers_here_and_elsewhere_get_every_event_with_the_same_ids(run_id: str) -> None:
    here, there = await _hub(), await _hub()
    try:
        await here.open(run_id)
        await here.own(run_id, _nothing)
        run = [START, *_deltas(0, 300), DONE]
        local, remote = Reader(here, run_id), Reader(there, run_id)
        for n, event in enumerate(run):
            await here.publish(run_id, event)
            if n % 7 == 0:
                await asyncio.sleep(0)  # bursts of several events between writes
        expected = list(enumerate(run, start=1))
        assert await local.done() == expected
        assert await remote.done() == expected
        assert await Reader(there, run_id, after=123).done() == expected[123:]
        entries = await there.redis.xlen(f"{PREFIX}:run:{run_id}:events")
        assert entries < len(run) / 2  # written in batches, not an entry per event
    finally:
        await here.aclose()
        await there.aclose()


class DurableReader(Reader):
    """A reader of the process that drives the run which checks, as it gets each event, that
    Redis already has it (asked on a connection of its own)."""

    def __init__(self, hub: RedisRunHub, elsewhere: RedisRunHub, run_id: str) -> None:
        self.ahead: list[tuple[int, int]] = []  # (id got, the id Redis had) where Redis lacked it
        self.elsewhere = elsewhere
        super().__init__(hub, run_id)

    async def _read(self, hub: RedisRunHub, run_id: str, after: int) -> None:
        async for item in hub.subscribe(run_id, after):
            written = await self.elsewhere.last_id(run_id)
            if item[0] > written:
                self.ahead.append((item[0], written))
            self.items.append(item)


async def test_a_cut_connection_to_redis_mid_run_loses_and_doubles_nothing(
    run_id: str, proxy: TcpProxy
) -> None:
    """While Redis is out of reach the run goes on, and no reader gets an event Redis lacks (a
    server restarted after a crash would number the run's next events from Redis's last id)."""
    here, there = await _hub(proxy.url(REDIS_URL)), await _hub()
    try:
        await here.open(run_id)
        await here.own(run_id, _nothing)
        local, remote = DurableReader(here, there, run_id), Reader(there, run_id)
        run = [START, *_deltas(0, 100), DONE]
        for event in run[:51]:
            await here.publish(run_id, event)
            await asyncio.sleep(0)
        await until(lambda: len(remote.items) >= 10 and len(local.items) >= 10)
        proxy.cut()
        for event in run[51:-1]:
            await here.publish(run_id, event)
            await asyncio.sleep(0)
        assert len(local.items) <= 51 and len(remote.items) <= 51
        proxy.restore()
        await here.publish(run_id, DONE)
        expected = list(enumerate(run, start=1))
        assert await local.done() == expected
        assert await remote.done() == expected
        assert local.ahead == []
    finally:
        proxy.restore()
        await here.aclose()
        await there.aclose()


async def test_a_reader_here_follows_a_run_that_goes_on_in_another_process(run_id: str) -> None:
    first, second = await _hub(), await _hub()
    try:
        await first.open(run_id)
        await first.own(run_id, _nothing)
        reader = Reader(first, run_id)
        for event in [START, *_deltas(0, 2)]:
            await first.publish(run_id, event)
        await first.disown(run_id)  # suspended: answered later, it goes on in ``second``
        await second.open(run_id, after=3)
        await second.own(run_id, _nothing)
        for event in [*_deltas(2, 2), DONE]:
            await second.publish(run_id, event)
        assert await reader.done() == list(enumerate([START, *_deltas(0, 4), DONE], start=1))
        assert await second.last_id(run_id) == 6
    finally:
        await first.aclose()
        await second.aclose()


async def test_many_runs_events_go_to_redis_together_and_an_end_frees_its_owner_key() -> None:
    """One write carries what every run published meanwhile (a pipeline, a stream entry per
    run), and the write of a run's end marks it done and drops its owner key as well."""
    here, there = await _hub(), await _hub()
    runs = [new_id("run") for _ in range(40)]
    trips = 0  # commands sent alone, and pipelines
    pipeline, command = here.redis.pipeline, here.redis.execute_command

    def counted_pipeline(*args: Any, **kwargs: Any) -> Any:
        nonlocal trips
        trips += 1
        return pipeline(*args, **kwargs)

    async def counted_command(*args: Any, **kwargs: Any) -> Any:
        nonlocal trips
        trips += 1
        return await command(*args, **kwargs)  # type: ignore[no-untyped-call]

    try:
        for run in runs:
            await here.open(run)
            await here.own(run, _nothing)
        readers = [Reader(there, run) for run in runs]
        here.redis.pipeline = counted_pipeline  # type: ignore[method-assign]
        here.redis.execute_command = counted_command  # type: ignore[method-assign]
        for event in [START, *_deltas(0, 3)]:
            for run in runs:  # no run waits for the others' writes
                await here.publish(run, event)
        await asyncio.gather(*(here.publish(run, DONE) for run in runs))
        expected = list(enumerate([START, *_deltas(0, 3), DONE], start=1))
        assert [await reader.done() for reader in readers] == [expected] * len(runs)
        assert trips <= 6  # not one a run (40), nor one an event (200)
        owners = [f"{PREFIX}:run:{run}:owner" for run in runs]
        assert await there.redis.exists(*owners) == 0
        assert [await there.is_finished(run) for run in runs] == [True] * len(runs)
    finally:
        await here.aclose()
        await there.aclose()
        client = aioredis.from_url(REDIS_URL)
        parts = ("events", "done", "live", "owner")
        await client.delete(*(f"{PREFIX}:run:{run}:{part}" for run in runs for part in parts))
        await client.aclose()
