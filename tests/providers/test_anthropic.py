"""The Anthropic provider against a fake Messages server on a real socket."""

from __future__ import annotations

import contextlib

import anyio
import pytest
from tests.fakes import anthropic_server as api
from tests.fakes._server import Scenario
from tests.fakes.anthropic_server import FakeAnthropic
from tests.providers.conftest import collect, collect_until_error

from parley import errors
from parley.providers.anthropic import AnthropicProvider
from parley.providers.base import (
    ChatMessage,
    FinishChunk,
    ImagePart,
    ProviderRequest,
    ReasoningChunk,
    TextChunk,
    TextPart,
    ToolCallChunk,
    ToolCallRequest,
    ToolSpec,
    UsageChunk,
)
from parley.providers.http import LOST_MID_STREAM, RetryPolicy

HELLO = ProviderRequest(model="claude-test", messages=[ChatMessage(role="user", content="hi")])


async def test_text_in_many_chunks_arrives_chunk_by_chunk_then_finish_and_usage(
    fake_anthropic: FakeAnthropic, anthropic_provider: AnthropicProvider
) -> None:
    fake_anthropic.enqueue(api.text("Hel", "lo", ", wor", "ld", input_tokens=12, output_tokens=4))

    events = await collect(anthropic_provider.stream(HELLO))

    assert events == [
        TextChunk(text="Hel"),
        TextChunk(text="lo"),
        TextChunk(text=", wor"),
        TextChunk(text="ld"),
        FinishChunk(reason="stop"),
        UsageChunk(prompt_tokens=12, completion_tokens=4),
    ]
    fake_anthropic.assert_done()


async def test_the_request_carries_system_tool_use_merged_tool_results_images_and_tools(
    fake_anthropic: FakeAnthropic, anthropic_provider: AnthropicProvider
) -> None:
    fake_anthropic.enqueue(api.text("ok"))
    request = ProviderRequest(
        model="claude-test",
        temperature=0.3,
        tools=[ToolSpec(name="get_weather", description="Weather", parameters=CITY)],
        messages=[
            ChatMessage(role="system", content="Be brief."),
            ChatMessage(role="system", content="Answer in English."),
            ChatMessage(
                role="user",
                content=[
                    TextPart(text="Weather here and there?"),
                    ImagePart(media_type="image/png", data="iVBORw0K"),
                    ImagePart(media_type="image/jpeg", url="https://example.com/map.jpg"),
                ],
            ),
            ChatMessage(
                role="assistant",
                content="Checking.",
                tool_calls=[
                    ToolCallRequest(id="toolu_1", name="get_weather", arguments='{"city":"Paris"}'),
                    ToolCallRequest(id="toolu_2", name="get_weather", arguments='{"city":"Rome"}'),
                ],
            ),
            ChatMessage(role="tool", tool_call_id="toolu_1", content="Sunny"),
            ChatMessage(role="tool", tool_call_id="toolu_2", content="Rain"),
            ChatMessage(role="assistant", content="Sunny in Paris, rain in Rome."),
            ChatMessage(role="user", content="Thanks"),
        ],
    )

    await collect(anthropic_provider.stream(request))

    assert fake_anthropic.exchanges[0].path == "/v1/messages"
    assert fake_anthropic.exchanges[0].headers["authorization"] == "Bearer sk-test"
    assert fake_anthropic.requests == [
        {
            "model": "claude-test",
            "max_tokens": 4096,
            "stream": True,
            "temperature": 0.3,
            "system": "Be brief.\n\nAnswer in English.",
            "tools": [{"name": "get_weather", "description": "Weather", "input_schema": CITY}],
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "Weather here and there?"},
                        {
                            "type": "image",
                            "source": {
                                "type": "base64",
                                "media_type": "image/png",
                                "data": "iVBORw0K",
                            },
                        },
                        {
                            "type": "image",
                            "source": {"type": "url", "url": "https://example.com/map.jpg"},
                        },
                    ],
                },
                {
                    "role": "assistant",
                    "content": [
                        {"type": "text", "text": "Checking."},
                        {
                            "type": "tool_use",
                            "id": "toolu_1",
                            "name": "get_weather",
                            "input": {"city": "Paris"},
                        },
                        {
                            "type": "tool_use",
                            "id": "toolu_2",
                            "name": "get_weather",
                            "input": {"city": "Rome"},
                        },
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "Sunny"},
                        {"type": "tool_result", "tool_use_id": "toolu_2", "content": "Rain"},
                    ],
                },
                {"role": "assistant", "content": "Sunny in Paris, rain in Rome."},
                {"role": "user", "content": "Thanks"},
            ],
        }
    ]


async def test_unset_options_are_left_out_and_max_tokens_is_passed_when_set(
    fake_anthropic: FakeAnthropic, anthropic_provider: AnthropicProvider
) -> None:
    fake_anthropic.enqueue(api.text("ok"))

    await collect(anthropic_provider.stream(HELLO.model_copy(update={"max_tokens": 77})))

    body = fake_anthropic.requests[0]
    assert set(body) == {"model", "messages", "max_tokens", "stream"}
    assert body["max_tokens"] == 77


async def test_tool_arguments_that_are_not_a_json_object_are_kept_whole(
    fake_anthropic: FakeAnthropic, anthropic_provider: AnthropicProvider
) -> None:
    fake_anthropic.enqueue(api.text("ok"))
    broken = ToolCallRequest(id="toolu_1", name="f", arguments='{"city": "Par')
    request = ProviderRequest(
        model="claude-test",
        messages=[
            ChatMessage(role="user", content="go"),
            ChatMessage(role="assistant", tool_calls=[broken]),
            ChatMessage(role="tool", tool_call_id="toolu_1", content="bad arguments"),
        ],
    )

    await collect(anthropic_provider.stream(request))

    assistant = fake_anthropic.requests[0]["messages"][1]
    assert assistant["content"] == [
        {
            "type": "tool_use",
            "id": "toolu_1",
            "name": "f",
            "input": {"_raw_arguments": '{"city": "Par'},
        }
    ]


async def test_tool_calls_are_numbered_from_zero_after_a_text_block(
    fake_anthropic: FakeAnthropic, anthropic_provider: AnthropicProvider
) -> None:
    fake_anthropic.enqueue(
        api.tool_use(
            ("toolu_1", "get_weather", ['{"city":', '"Paris"}']),
            ("toolu_2", "get_time", ['{"tz":"CET"}']),
            preamble="Let me check.",
        )
    )

    events = await collect(anthropic_provider.stream(HELLO))

    assert events == [
        TextChunk(text="Let me check."),
        ToolCallChunk(index=0, id="toolu_1", name="get_weather"),
        ToolCallChunk(index=0, arguments='{"city":'),
        ToolCallChunk(index=0, arguments='"Paris"}'),
        ToolCallChunk(index=1, id="toolu_2", name="get_time"),
        ToolCallChunk(index=1, arguments='{"tz":"CET"}'),
        FinishChunk(reason="tool_calls"),
        UsageChunk(prompt_tokens=44, completion_tokens=16),
    ]


async def test_thinking_becomes_reasoning_chunks(
    fake_anthropic: FakeAnthropic, anthropic_provider: AnthropicProvider
) -> None:
    fake_anthropic.enqueue(api.text("Hi", thinking=("Let me ", "think")))

    events = await collect(anthropic_provider.stream(HELLO))

    assert events[:3] == [
        ReasoningChunk(text="Let me "),
        ReasoningChunk(text="think"),
        TextChunk(text="Hi"),
    ]


@pytest.mark.parametrize(
    ("stop_reason", "expected"),
    [
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("something_new", "stop"),
    ],
)
async def test_stop_reasons_map_to_parley_finish_reasons(
    fake_anthropic: FakeAnthropic,
    anthropic_provider: AnthropicProvider,
    stop_reason: str,
    expected: str,
) -> None:
    fake_anthropic.enqueue(api.text("x", stop_reason=stop_reason))

    events = await collect(anthropic_provider.stream(HELLO))

    assert events[1] == FinishChunk(reason=expected)


async def test_prompt_usage_counts_cache_reads_and_writes(
    fake_anthropic: FakeAnthropic, anthropic_provider: AnthropicProvider
) -> None:
    start = api.message_start(10, cache_read_input_tokens=100, cache_creation_input_tokens=20)
    fake_anthropic.enqueue(api.sse(start, *api.text_block(0, "x"), *api.finish("end_turn", 7)))

    events = await collect(anthropic_provider.stream(HELLO))

    assert events[-1] == UsageChunk(prompt_tokens=130, completion_tokens=7)


async def test_a_server_that_counts_no_tokens_gives_no_usage(
    fake_anthropic: FakeAnthropic, anthropic_provider: AnthropicProvider
) -> None:
    start = api.event("message_start", message={"id": "m", "type": "message", "role": "assistant"})
    stop = api.event("message_delta", delta={"stop_reason": "end_turn"})
    fake_anthropic.enqueue(api.sse(start, *api.text_block(0, "x"), stop, api.event("message_stop")))

    events = await collect(anthropic_provider.stream(HELLO))

    assert events == [TextChunk(text="x"), FinishChunk(reason="stop")]


async def test_overloaded_is_retried_then_reported_unavailable(
    fake_anthropic: FakeAnthropic, anthropic_provider: AnthropicProvider
) -> None:
    fake_anthropic.enqueue(api.overloaded(), api.error(500, "api_error", "oops"), api.overloaded())

    events, exc = await collect_until_error(anthropic_provider.stream(HELLO))

    assert events == []
    assert type(exc) is errors.ProviderUnavailable
    assert "HTTP 529: Overloaded" in exc.message
    assert len(fake_anthropic.requests) == 3  # the first try and max_retries=2


async def test_a_rate_limit_is_retried_after_retry_after_and_then_succeeds(
    fake_anthropic: FakeAnthropic, anthropic_provider: AnthropicProvider
) -> None:
    anthropic_provider.retry_policy = RetryPolicy(
        base_delay=60, max_delay=60
    )  # Retry-After or bust
    limited = api.error(429, "rate_limit_error", "slow down", headers={"retry-after": "0"})
    fake_anthropic.enqueue(limited, api.text("fine"))

    with anyio.fail_after(5):
        events = await collect(anthropic_provider.stream(HELLO))

    assert events[0] == TextChunk(text="fine")
    assert len(fake_anthropic.requests) == 2


async def test_an_overloaded_event_before_any_chunk_is_retried(
    fake_anthropic: FakeAnthropic, anthropic_provider: AnthropicProvider
) -> None:
    overloaded = api.error_event("overloaded_error", "Overloaded")
    fake_anthropic.enqueue(api.sse(api.message_start(), overloaded), api.text("again"))

    events = await collect(anthropic_provider.stream(HELLO))

    assert events[0] == TextChunk(text="again")
    assert len(fake_anthropic.requests) == 2


async def test_an_error_event_after_the_first_chunk_ends_the_stream_without_retry(
    fake_anthropic: FakeAnthropic, anthropic_provider: AnthropicProvider
) -> None:
    overloaded = api.error_event("overloaded_error", "Overloaded")
    partial = api.text_block(0, "Hel")[:2]
    fake_anthropic.enqueue(api.sse(api.message_start(), *partial, overloaded), api.text("no"))

    events, exc = await collect_until_error(anthropic_provider.stream(HELLO))

    assert events == [TextChunk(text="Hel")]
    assert type(exc) is errors.ProviderUnavailable
    assert "Overloaded" in exc.message
    assert len(fake_anthropic.requests) == 1
    assert fake_anthropic.pending == 1


async def test_a_server_that_never_answers_times_out(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.enqueue(api.hang())
    provider = AnthropicProvider(base_url=fake_anthropic.base_url, api_key=None, timeout=0.5)

    async with contextlib.aclosing(provider):
        with anyio.fail_after(5):
            events, exc = await collect_until_error(provider.stream(HELLO))

    assert events == []
    assert type(exc) is errors.ProviderTimeout
    assert len(fake_anthropic.requests) == 1  # a timeout is not retried


async def test_a_stall_mid_stream_times_out_after_the_chunks_before_it(
    fake_anthropic: FakeAnthropic,
) -> None:
    partial = api.text_block(0, "Hel")[:2]
    fake_anthropic.enqueue(api.sse(api.message_start(), *partial, api.Hang()))
    provider = AnthropicProvider(base_url=fake_anthropic.base_url, api_key=None, timeout=0.5)

    async with contextlib.aclosing(provider):
        with anyio.fail_after(5):
            events, exc = await collect_until_error(provider.stream(HELLO))

    assert events == [TextChunk(text="Hel")]
    assert type(exc) is errors.ProviderTimeout
    assert exc.message.endswith("was silent for 0.5s mid-stream")


async def test_a_malformed_event_is_a_provider_error(
    fake_anthropic: FakeAnthropic, anthropic_provider: AnthropicProvider
) -> None:
    fake_anthropic.enqueue(api.malformed(api.message_start(), *api.text_block(0, "Hi")[:2]))

    events, exc = await collect_until_error(anthropic_provider.stream(HELLO))

    assert events == [TextChunk(text="Hi")]
    assert type(exc) is errors.ProviderError
    assert "malformed" in exc.message
    assert isinstance(exc.__cause__, ValueError)  # json.JSONDecodeError


async def test_a_connection_dropped_mid_stream_is_a_broken_answer_after_the_chunks_before_it(
    fake_anthropic: FakeAnthropic, anthropic_provider: AnthropicProvider
) -> None:
    partial = api.text_block(0, "Hel", "lo")[:3]
    fake_anthropic.enqueue(api.sse(api.message_start(), *partial, api.Drop()), api.text("no"))

    events, exc = await collect_until_error(anthropic_provider.stream(HELLO))

    assert events == [TextChunk(text="Hel"), TextChunk(text="lo")]
    assert type(exc) is errors.ProviderDisconnected  # the provider broke its answer: a 502
    assert (exc.message, exc.status) == (LOST_MID_STREAM, 502)
    assert len(fake_anthropic.requests) == 1  # nothing is retried after the first chunk
    assert fake_anthropic.pending == 1


async def test_a_stream_that_ends_without_a_stop_reason_is_a_broken_answer(
    fake_anthropic: FakeAnthropic, anthropic_provider: AnthropicProvider
) -> None:
    fake_anthropic.enqueue(api.sse(api.message_start(), *api.text_block(0, "Hel")))

    events, exc = await collect_until_error(anthropic_provider.stream(HELLO))

    assert events == [TextChunk(text="Hel")]
    assert type(exc) is errors.ProviderDisconnected  # the provider broke its answer: a 502
    assert (exc.message, exc.status) == (LOST_MID_STREAM, 502)


async def test_closing_the_stream_early_cuts_the_upstream_response_off(
    fake_anthropic: FakeAnthropic, anthropic_provider: AnthropicProvider
) -> None:
    fake_anthropic.enqueue(api.endless(every_ms=1))

    stream = anthropic_provider.stream(HELLO)
    assert await anext(stream) == TextChunk(text="x")
    await stream.aclose()

    with anyio.fail_after(5):
        await fake_anthropic.cut_off.wait()
    assert fake_anthropic.exchanges[0].cut_off


@pytest.mark.parametrize(
    ("status", "error_type", "kind", "message"),
    [
        (400, "invalid_request_error", errors.ProviderError, "(HTTP 400): bad tools"),
        (401, "authentication_error", errors.ProviderError, "provider rejected the API key"),
        (403, "permission_error", errors.ProviderError, "provider rejected the API key"),
        (404, "not_found_error", errors.InvalidModel, "no model 'claude-test': bad tools"),
    ],
)
async def test_client_errors_are_mapped_and_not_retried(
    fake_anthropic: FakeAnthropic,
    anthropic_provider: AnthropicProvider,
    status: int,
    error_type: str,
    kind: type[errors.ParleyError],
    message: str,
) -> None:
    fake_anthropic.enqueue(api.error(status, error_type, "bad tools"))

    _, exc = await collect_until_error(anthropic_provider.stream(HELLO))

    assert type(exc) is kind
    assert message in exc.message
    assert len(fake_anthropic.requests) == 1


async def test_models_lists_the_model_ids(
    fake_anthropic: FakeAnthropic, anthropic_provider: AnthropicProvider
) -> None:
    fake_anthropic.enqueue(api.models("claude-a", "claude-b"), api.overloaded())

    assert await anthropic_provider.models() == ["claude-a", "claude-b"]
    with pytest.raises(errors.ProviderUnavailable):
        await anthropic_provider.models()
    assert fake_anthropic.exchanges[0].path == "/v1/models"


@pytest.mark.parametrize("status", [200, 404])
async def test_a_web_page_instead_of_the_model_list_is_one_clear_line(
    fake_anthropic: FakeAnthropic, anthropic_provider: AnthropicProvider, status: int
) -> None:
    page = b"<!doctype html><title>Sign in</title>"
    fake_anthropic.enqueue(Scenario(status, steps=[page], media_type="text/html"))

    with pytest.raises(errors.ProviderError) as failed:
        await anthropic_provider.models()
    assert failed.value.message == (
        f"anthropic answered HTML, not the Anthropic API (status {status}) — check the base URL"
    )


CITY = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
