"""Fixtures for the provider adapters: each runs against its fake API on a loopback socket."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.openai_server import FakeOpenAI

from parley import errors
from parley.providers.anthropic import AnthropicProvider
from parley.providers.base import ProviderEvent
from parley.providers.http import RetryPolicy
from parley.providers.openai import OpenAIProvider

FAST_RETRIES = RetryPolicy(max_retries=2, base_delay=0.001, max_delay=0.01)


@pytest.fixture
async def fake_openai() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as fake:
        yield fake
        assert fake.unexpected == 0, "the provider made a request the test did not script"


@pytest.fixture
async def openai_provider(fake_openai: FakeOpenAI) -> AsyncIterator[OpenAIProvider]:
    provider = OpenAIProvider(base_url=fake_openai.base_url, api_key="sk-test", timeout=5)
    provider.retry_policy = FAST_RETRIES
    yield provider
    await provider.aclose()


@pytest.fixture
async def fake_anthropic() -> AsyncIterator[FakeAnthropic]:
    async with FakeAnthropic() as fake:
        yield fake
        assert fake.unexpected == 0, "the provider made a request the test did not script"


@pytest.fixture
async def anthropic_provider(fake_anthropic: FakeAnthropic) -> AsyncIterator[AnthropicProvider]:
    provider = AnthropicProvider(base_url=fake_anthropic.base_url, api_key="sk-test", timeout=5)
    provider.retry_policy = FAST_RETRIES
    yield provider
    await provider.aclose()


async def collect(stream: AsyncIterator[ProviderEvent]) -> list[ProviderEvent]:
    return [event async for event in stream]


async def collect_until_error(
    stream: AsyncIterator[ProviderEvent],
) -> tuple[list[ProviderEvent], errors.ParleyError]:
    """The events delivered before the stream failed, and its error (which must come)."""
    events: list[ProviderEvent] = []
    try:
        async for event in stream:
            events.append(event)
    except errors.ParleyError as exc:
        return events, exc
    raise AssertionError(f"the stream ended without an error after {events!r}")
