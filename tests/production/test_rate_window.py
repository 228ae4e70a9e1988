"""The request limit is a sliding window: at most N admitted in any 60 seconds, on both backends.

A fixed per-minute counter let a burst at 12:00:59 and another at 12:01:00 through (2N in two
seconds), and made any test that crossed a minute's edge flaky. These tests pass the clock in, so
they can stand on either side of that edge.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from tests.conftest import REDIS_URL

from parley.config import LimitsConfig
from parley.limits import Backend, MemoryBackend, RedisBackend

EDGE = 1_800_000_000.0  # a minute's edge: EDGE % 60 == 0
THREE = LimitsConfig(requests_per_minute=3)


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    if request.param == "memory":
        yield MemoryBackend(run_timeout=600)
        return
    client = aioredis.from_url(REDIS_URL)
    await client.delete("parley:limit:u:admitted", "parley:limit:u:running")
    try:
        yield RedisBackend(client, run_timeout=600)
    finally:
        await client.delete("parley:limit:u:admitted", "parley:limit:u:running")
        await client.aclose()


async def _admit(backend: Backend, run: str, now: float) -> float | None:
    wait = await backend.admit("u", run, THREE, 0, 0.0, now)
    await backend.finish("u", run)  # the concurrency slot is not what these tests are about
    return wait


async def test_a_minute_edge_does_not_reset_the_count(backend: Backend) -> None:
    assert EDGE % 60 == 0
    for i, now in enumerate([EDGE - 1.5, EDGE - 1.0, EDGE - 0.5]):
        assert await _admit(backend, f"r{i}", now) is None
    wait = await _admit(backend, "r3", EDGE + 0.5)
    assert wait is not None
    # The first of the three leaves the window at EDGE + 58.5: that is when a fourth fits.
    assert 57.0 <= wait <= 59.0


async def test_a_request_is_admitted_once_the_oldest_leaves_the_window(backend: Backend) -> None:
    for i, now in enumerate([EDGE + 10, EDGE + 20, EDGE + 30]):
        assert await _admit(backend, f"r{i}", now) is None
    assert await _admit(backend, "early", EDGE + 69.9) is not None
    assert await _admit(backend, "late", EDGE + 70.1) is None
    # Now EDGE+20, +30 and +70.1 are in the window: the next fits when +20 leaves it.
    wait = await _admit(backend, "next", EDGE + 75)
    assert wait is not None and 4.0 <= wait <= 6.0


async def test_a_refused_request_is_not_counted(backend: Backend) -> None:
    for i in range(3):
        assert await _admit(backend, f"r{i}", EDGE + i) is None
    for i in range(10):
        assert await _admit(backend, f"refused{i}", EDGE + 30 + i) is not None
    assert await _admit(backend, "after", EDGE + 60.5) is None


async def test_zero_requests_per_minute_refuses_everything(backend: Backend) -> None:
    wait = await backend.admit("u", "r", LimitsConfig(requests_per_minute=0), 0, 0.0, EDGE)
    assert wait is not None and wait >= 1
