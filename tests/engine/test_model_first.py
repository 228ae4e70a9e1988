"""``RunManager.start`` returns once the model has its request: the run has the loop until then.

The door builds its response (tasks, the first write) after ``start`` returns. Built before, that
work ran between the run's steps to the model and added to every first token; now it runs while
the model thinks. These tests hold the three ways ``start`` can stop waiting: the request left
(the OpenAI provider reports it from aiohttp's trace), the request failed before it left (a
retry's back-off must not hold the client's response), or the provider cannot tell (at once).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

from tests.conftest import Live
from tests.fakes.openai_server import FakeOpenAI, hang

from parley.auth import Principal
from parley.chat import events as ev
from parley.engine.requests import TurnRequest
from parley.providers.base import Provider, ProviderEvent, ProviderRequest, TextChunk
from parley.providers.http import RetryPolicy
from parley.providers.openai import OpenAIProvider
from parley.providers.scripted import ScriptedProvider


class _Holding(Provider):
    """Reports its request sent only when the test says so."""

    name = "holding"
    reports_sent = True

    def __init__(self) -> None:
        self.send = asyncio.Event()

    async def stream(self, request: ProviderRequest) -> AsyncIterator[ProviderEvent]:
        await self.send.wait()
        assert request.on_sent is not None
        request.on_sent()
        yield TextChunk(text="hi")


async def _start(live: Live, provider: str) -> asyncio.Task[object]:
    convo = await live.services.store.create_conversation("alice")
    request = TurnRequest(content="hi", provider=provider)
    return asyncio.create_task(live.services.runs.start(Principal("alice"), convo.id, request))


async def test_start_waits_until_the_provider_reports_its_request_sent(live: Live) -> None:
    holding = _Holding()
    live.services.providers.register("holding", holding, default_model="m")
    live.services.runs.ask_first_limit = 30
    starting = await _start(live, "holding")
    await asyncio.sleep(0.2)
    assert not starting.done()  # the message is committed, the model not yet asked
    holding.send.set()
    async with asyncio.timeout(5):
        turn = await starting
    await live.services.runs.wait(turn.run_id)  # type: ignore[attr-defined]


async def test_start_waits_for_the_model_request_at_most_a_moment(live: Live) -> None:
    """A model host that does not take the connection must not hold the client's response."""
    holding = _Holding()
    live.services.providers.register("holding", holding, default_model="m")
    live.services.runs.ask_first_limit = 0.05
    starting = await _start(live, "holding")
    async with asyncio.timeout(5):
        turn = await starting
    assert turn.asked is not None and turn.asked.cancelled()  # type: ignore[attr-defined]
    holding.send.set()  # the request leaves later: nothing waits for it any more
    await live.services.runs.wait(turn.run_id)  # type: ignore[attr-defined]


async def test_the_openai_provider_reports_the_request_before_any_answer(live: Live) -> None:
    live.services.runs.ask_first_limit = 30
    async with FakeOpenAI() as fake:
        fake.enqueue(hang())  # takes the request, never answers
        provider = OpenAIProvider(base_url=fake.base_url, api_key="sk-fake", max_retries=0)
        live.services.providers.register("fake", provider, default_model="m")
        starting = await _start(live, "fake")
        async with asyncio.timeout(5):
            turn = await starting
        # it returned because the request was written (aiohttp's trace), long before the
        # 30 s limit, with the run still waiting for the answer that never comes
        assert turn.asked.done() and not turn.asked.cancelled()  # type: ignore[attr-defined]
        run_id = turn.run_id  # type: ignore[attr-defined]
        assert not live.services.runs._tasks[run_id].done()
        async with asyncio.timeout(2):  # the fake, on this loop, reads what is on the wire
            await fake.received.wait()
        assert [exchange.body["messages"][-1] for exchange in fake.exchanges] == [
            {"role": "user", "content": "hi"}
        ]
        assert await live.services.runs.cancel(Principal("alice"), run_id) == "cancelled"
        await provider.aclose()


async def test_a_request_that_cannot_leave_does_not_hold_the_response(live: Live) -> None:
    with socket.socket() as closed:  # a port with nothing listening
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    provider = OpenAIProvider(base_url=f"http://127.0.0.1:{port}/v1", api_key="x")
    provider.retry_policy = RetryPolicy(max_retries=1, base_delay=60, max_delay=60)
    live.services.providers.register("down", provider, default_model="m")
    live.services.runs.ask_first_limit = 30
    starting = await _start(live, "down")
    async with asyncio.timeout(5):
        turn = await starting  # not after the minute's back-off
    run_id = turn.run_id  # type: ignore[attr-defined]
    assert not live.services.runs._tasks[run_id].done()
    assert await live.services.runs.cancel(Principal("alice"), run_id) == "cancelled"
    events = [event async for _, event in live.services.runs.turn_events(turn)]  # type: ignore[arg-type]
    assert isinstance(events[-1], ev.RunFinished)
    assert events[-1].finish_reason == "cancelled"
    await provider.aclose()


async def test_a_provider_that_cannot_tell_does_not_hold_the_response(
    live: Live, scripted: ScriptedProvider
) -> None:
    live.services.runs.ask_first_limit = 30
    scripted.enqueue([{"wait": "go"}, {"text": "late"}])
    starting = await _start(live, "scripted")
    async with asyncio.timeout(5):
        turn = await starting
    scripted.release("go")
    await live.services.runs.wait(turn.run_id)  # type: ignore[attr-defined]
