"""The OpenAI-compatible provider against a fake Chat Completions server on a real socket."""

from __future__ import annotations

import base64
import contextlib
import gc
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import anyio
import httpx2
import pytest
from tests.fakes import openai_server as api
from tests.fakes.openai_server import FakeOpenAI
from tests.providers.conftest import FAST_RETRIES, collect, collect_until_error
from tests.support.garbage import cyclic_garbage, types_from

from parley import errors
from parley.providers.base import (
    ChatMessage,
    FinishChunk,
    ImagePart,
    ProviderEvent,
    ProviderRequest,
    ReasoningChunk,
    TextChunk,
    TextPart,
    ToolCallChunk,
    ToolCallRequest,
    ToolSpec,
    UsageChunk,
)
from parley.providers.http import LOST_MID_STREAM, RetryPolicy, retry_after
from parley.providers.openai import OpenAIProvider

HELLO = ProviderRequest(model="fake-model", messages=[ChatMessage(role="user", content="hi")])


async def test_text_in_many_chunks_arrives_chunk_by_chunk_then_finish_and_usage(
    fake_openai: FakeOpenAI, openai_provider: OpenAIProvider
) -> None:
    fake_openai.enqueue(api.text("Hel", "lo", ", wor", "ld", usage=(7, 4)))

    events = await collect(openai_provider.stream(HELLO))

    assert events == [
        TextChunk(text="Hel"),
        TextChunk(text="lo"),
        TextChunk(text=", wor"),
        TextChunk(text="ld"),
        FinishChunk(reason="stop"),
        UsageChunk(prompt_tokens=7, completion_tokens=4),
    ]
    fake_openai.assert_done()


async def test_the_request_carries_the_converted_history_tools_and_asks_for_usage(
    fake_openai: FakeOpenAI, openai_provider: OpenAIProvider
) -> None:
    fake_openai.enqueue(api.text("ok"))
    request = ProviderRequest(
        model="gpt-test",
        temperature=0.2,
        max_tokens=50,
        tools=[ToolSpec(name="get_weather", description="Weather", parameters=WEATHER_SCHEMA)],
        messages=[
            ChatMessage(role="system", content="Be brief."),
            ChatMessage(
                role="user",
                content=[
                    TextPart(text="What is this?"),
                    ImagePart(media_type="image/png", data="iVBORw0K"),
                    ImagePart(media_type="image/jpeg", url="https://example.com/cat.jpg"),
                ],
            ),
            ChatMessage(
                role="assistant",
                tool_calls=[
                    ToolCallRequest(id="call_1", name="get_weather", arguments='{"city":"Paris"}')
                ],
            ),
            ChatMessage(role="tool", tool_call_id="call_1", content="Sunny"),
            ChatMessage(role="assistant", content="It is sunny."),
        ],
    )

    await collect(openai_provider.stream(request))

    assert fake_openai.exchanges[0].path == "/v1/chat/completions"
    assert fake_openai.exchanges[0].headers["authorization"] == "Bearer sk-test"
    assert fake_openai.requests == [
        {
            "model": "gpt-test",
            "stream": True,
            "stream_options": {"include_usage": True},
            "temperature": 0.2,
            "max_tokens": 50,
            "tools": [
                {
                    "type": "function",
                    "function": {
                        "name": "get_weather",
                        "description": "Weather",
                        "parameters": WEATHER_SCHEMA,
                    },
                }
            ],
            "messages": [
                {"role": "system", "content": "Be brief."},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is this?"},
                        {
                            "type": "image_url",
                            "image_url": {"url": "data:image/png;base64,iVBORw0K"},
                        },
                        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
                    ],
                },
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "call_1", "content": "Sunny"},
                {"role": "assistant", "content": "It is sunny."},
            ],
        }
    ]


async def test_unset_options_and_empty_tools_are_left_out_of_the_request(
    fake_openai: FakeOpenAI, openai_provider: OpenAIProvider
) -> None:
    fake_openai.enqueue(api.text("ok"))

    await collect(openai_provider.stream(HELLO))

    assert set(fake_openai.requests[0]) == {"model", "messages", "stream", "stream_options"}


async def test_tool_call_fragments_keep_their_index_id_name_and_argument_pieces(
    fake_openai: FakeOpenAI, openai_provider: OpenAIProvider
) -> None:
    fake_openai.enqueue(
        api.tool_calls(
            ("call_1", "get_weather", ['{"city":', '"Paris"}']),
            ("call_2", "get_time", ['{"tz":"CET"}']),
        )
    )

    events = await collect(openai_provider.stream(HELLO))

    assert events == [
        ToolCallChunk(index=0, id="call_1", name="get_weather", arguments=""),
        ToolCallChunk(index=0, arguments='{"city":'),
        ToolCallChunk(index=0, arguments='"Paris"}'),
        ToolCallChunk(index=1, id="call_2", name="get_time", arguments=""),
        ToolCallChunk(index=1, arguments='{"tz":"CET"}'),
        FinishChunk(reason="tool_calls"),
        UsageChunk(prompt_tokens=44, completion_tokens=16),
    ]


async def test_reasoning_outside_the_openai_schema_becomes_reasoning_chunks(
    fake_openai: FakeOpenAI, openai_provider: OpenAIProvider
) -> None:
    ollama_style = api.chunk({"reasoning": "hmm"})
    fake_openai.enqueue(
        api.text("Hi", reasoning=("Let me ", "think")),
        api.sse(ollama_style, api.chunk({"content": "Yo"}), api.chunk(finish="stop")),
    )

    first = await collect(openai_provider.stream(HELLO))
    second = await collect(openai_provider.stream(HELLO))

    assert first[:3] == [
        ReasoningChunk(text="Let me "),
        ReasoningChunk(text="think"),
        TextChunk(text="Hi"),
    ]
    assert second == [ReasoningChunk(text="hmm"), TextChunk(text="Yo"), FinishChunk()]


async def test_a_lenient_server_may_leave_out_delta_choices_and_usage(
    fake_openai: FakeOpenAI, openai_provider: OpenAIProvider
) -> None:
    no_delta = {**api.chunk(), "choices": [{"index": 0, "finish_reason": "stop"}]}
    no_choices = api.chunk(usage=(3, 1))
    del no_choices["choices"]
    fake_openai.enqueue(api.sse(*api.text_deltas("Hi"), no_delta, no_choices))

    events = await collect(openai_provider.stream(HELLO))

    assert events == [
        TextChunk(text="Hi"),
        FinishChunk(),
        UsageChunk(prompt_tokens=3, completion_tokens=1),
    ]


@pytest.mark.parametrize(
    ("sent", "expected"),
    [
        ("length", "length"),
        ("content_filter", "content_filter"),
        ("function_call", "tool_calls"),
        ("something_new", "stop"),
    ],
)
async def test_finish_reasons_map_to_parley_finish_reasons(
    fake_openai: FakeOpenAI, openai_provider: OpenAIProvider, sent: str, expected: str
) -> None:
    fake_openai.enqueue(api.text("x", finish=sent, usage=None))

    events = await collect(openai_provider.stream(HELLO))

    assert events == [TextChunk(text="x"), FinishChunk(reason=expected)]


async def test_server_errors_are_retried_then_reported_unavailable(
    fake_openai: FakeOpenAI, openai_provider: OpenAIProvider
) -> None:
    fake_openai.enqueue(*[api.error(500, "boom", type="server_error")] * 3)

    events, exc = await collect_until_error(openai_provider.stream(HELLO))

    assert events == []
    assert type(exc) is errors.ProviderUnavailable
    assert "HTTP 500: boom" in exc.message
    assert len(fake_openai.requests) == 3  # the first try and max_retries=2


async def test_a_rate_limit_is_retried_after_retry_after_and_then_succeeds(
    fake_openai: FakeOpenAI, openai_provider: OpenAIProvider
) -> None:
    openai_provider.retry_policy = RetryPolicy(base_delay=60, max_delay=60)  # Retry-After or bust
    fake_openai.enqueue(
        api.error(429, "slow down", type="rate_limit_error", headers={"retry-after": "0"}),
        api.text("fine"),
    )

    with anyio.fail_after(5):
        events = await collect(openai_provider.stream(HELLO))

    assert events[0] == TextChunk(text="fine")
    assert len(fake_openai.requests) == 2


async def test_a_drop_before_any_event_is_retried(
    fake_openai: FakeOpenAI, openai_provider: OpenAIProvider
) -> None:
    role_only = api.text_deltas()
    fake_openai.enqueue(api.sse(*role_only, api.Drop(), done=False), api.text("again"))

    events = await collect(openai_provider.stream(HELLO))

    assert events[0] == TextChunk(text="again")
    assert len(fake_openai.requests) == 2


async def test_a_server_that_never_answers_times_out(fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(api.hang())
    provider = OpenAIProvider(base_url=fake_openai.base_url, api_key=None, timeout=0.5)

    async with contextlib.aclosing(provider):
        with anyio.fail_after(5):
            events, exc = await collect_until_error(provider.stream(HELLO))

    assert events == []
    assert type(exc) is errors.ProviderTimeout
    assert len(fake_openai.requests) == 1  # a timeout is not retried


async def test_a_stall_mid_stream_times_out_after_the_chunks_before_it(
    fake_openai: FakeOpenAI,
) -> None:
    fake_openai.enqueue(api.sse(*api.text_deltas("Hel"), api.Hang(), done=False))
    provider = OpenAIProvider(base_url=fake_openai.base_url, api_key=None, timeout=0.5)

    async with contextlib.aclosing(provider):
        with anyio.fail_after(5):
            events, exc = await collect_until_error(provider.stream(HELLO))

    assert events == [TextChunk(text="Hel")]
    assert type(exc) is errors.ProviderTimeout
    assert exc.message.endswith("was silent for 0.5s mid-stream")


async def test_a_malformed_chunk_is_a_provider_error(
    fake_openai: FakeOpenAI, openai_provider: OpenAIProvider
) -> None:
    fake_openai.enqueue(api.malformed(*api.text_deltas("Hi")))

    events, exc = await collect_until_error(openai_provider.stream(HELLO))

    assert events == [TextChunk(text="Hi")]
    assert type(exc) is errors.ProviderError
    assert "malformed" in exc.message
    assert isinstance(exc.__cause__, ValueError)  # json.JSONDecodeError


async def test_an_error_event_inside_the_stream_is_a_provider_error(
    fake_openai: FakeOpenAI, openai_provider: OpenAIProvider
) -> None:
    error = {"error": {"message": "upstream exploded", "type": "x", "param": None, "code": "boom"}}
    fake_openai.enqueue(api.sse(*api.text_deltas("Hi"), error, done=False))

    events, exc = await collect_until_error(openai_provider.stream(HELLO))

    assert events == [TextChunk(text="Hi")]
    assert type(exc) is errors.ProviderError
    assert "upstream exploded" in exc.message


async def test_a_connection_dropped_mid_stream_is_a_broken_answer_after_the_chunks_before_it(
    fake_openai: FakeOpenAI, openai_provider: OpenAIProvider
) -> None:
    fake_openai.enqueue(api.sse(*api.text_deltas("Hel", "lo"), api.Drop(), done=False))

    events, exc = await collect_until_error(openai_provider.stream(HELLO))

    assert events == [TextChunk(text="Hel"), TextChunk(text="lo")]
    assert type(exc) is errors.ProviderDisconnected  # the provider broke its answer: a 502
    assert (exc.message, exc.status) == (LOST_MID_STREAM, 502)


async def test_a_stream_that_ends_without_a_finish_reason_is_a_broken_answer(
    fake_openai: FakeOpenAI, openai_provider: OpenAIProvider
) -> None:
    fake_openai.enqueue(api.sse(*api.text_deltas("Hel"), done=True))

    events, exc = await collect_until_error(openai_provider.stream(HELLO))

    assert events == [TextChunk(text="Hel")]
    assert type(exc) is errors.ProviderDisconnected  # the provider broke its answer: a 502
    assert (exc.message, exc.status) == (LOST_MID_STREAM, 502)


async def test_nothing_is_retried_once_the_first_chunk_was_delivered(
    fake_openai: FakeOpenAI, openai_provider: OpenAIProvider
) -> None:
    fake_openai.enqueue(api.sse(*api.text_deltas("Hel"), api.Drop(), done=False), api.text("no"))

    events, exc = await collect_until_error(openai_provider.stream(HELLO))

    assert events == [TextChunk(text="Hel")]
    assert type(exc) is errors.ProviderDisconnected
    assert len(fake_openai.requests) == 1
    assert fake_openai.pending == 1


async def test_a_stream_read_to_done_gives_its_connection_back_for_the_next_request(
    fake_openai: FakeOpenAI, openai_provider: OpenAIProvider
) -> None:
    """A response left unread after ``[DONE]`` would close its connection: every reply would
    then pay a new TCP connection before its first token."""
    fake_openai.enqueue(*[api.text("a", "b") for _ in range(3)])

    for _ in range(3):
        assert TextChunk(text="b") in await collect(openai_provider.stream(HELLO))

        await anyio.sleep(0.05)  # a closed connection reaches the server

    assert len(fake_openai.exchanges) == 3
    assert all(exchange.finished for exchange in fake_openai.exchanges)
    assert len(fake_openai._state.connections) == 1, "each request opened its own connection"
    assert fake_openai._state.total_requests == 3


async def test_closing_the_stream_early_cuts_the_upstream_response_off(
    fake_openai: FakeOpenAI, openai_provider: OpenAIProvider
) -> None:
    fake_openai.enqueue(api.sse(*api.text_deltas("Hel"), api.Hang(), done=False))

    stream = openai_provider.stream(HELLO)
    assert await anext(stream) == TextChunk(text="Hel")
    await stream.aclose()

    with anyio.fail_after(5):
        await fake_openai.cut_off.wait()
    assert fake_openai.exchanges[0].cut_off
    assert not fake_openai.exchanges[0].finished


async def test_the_request_body_is_sent_with_its_length_and_not_held_while_the_reply_streams(
    fake_openai: FakeOpenAI, openai_provider: OpenAIProvider
) -> None:
    """The body carries the whole history: kept on the client's request (which its response
    may keep) it would cost every open stream its conversation's size until the reply ends."""
    fake_openai.enqueue(api.sse(*api.text_deltas("Hel"), api.Hang(), done=False))
    marker = "history-" + "x" * 50_000
    request = ProviderRequest(model="m", messages=[ChatMessage(role="user", content=marker)])

    stream = openai_provider.stream(request)
    assert await anext(stream) == TextChunk(text="Hel")
    try:
        assert _bytes_holding(marker.encode()) == []
    finally:
        await stream.aclose()

    exchange = fake_openai.exchanges[0]
    assert exchange.body["messages"] == [{"role": "user", "content": marker}]
    assert exchange.headers["content-type"] == "application/json"
    assert int(exchange.headers["content-length"]) > len(marker)
    assert "transfer-encoding" not in exchange.headers


CLIENT_MODULES = ("aiohttp", "httpx2", "openai", "parley")


def _bytes_holding(marker: bytes) -> list[str]:
    """The client-side objects (the HTTP client's, parley's) holding bytes with ``marker``
    (the fake server in this process keeps what it received)."""
    gc.collect()
    return [
        type(holder).__qualname__
        for holder in gc.get_objects()
        if str(getattr(type(holder), "__module__", "")).startswith(CLIENT_MODULES)
        for value in gc.get_referents(holder)
        if isinstance(value, bytes) and marker in value
    ]


@pytest.mark.parametrize(
    ("status", "kind", "message"),
    [
        (400, errors.ProviderError, "refused the request (HTTP 400): bad tools"),
        (401, errors.ProviderError, "provider rejected the API key"),
        (403, errors.ProviderError, "provider rejected the API key"),
        (404, errors.InvalidModel, "openai has no model 'fake-model': bad tools"),
        (422, errors.ProviderError, "refused the request (HTTP 422): bad tools"),
    ],
)
async def test_client_errors_are_mapped_and_not_retried(
    fake_openai: FakeOpenAI,
    openai_provider: OpenAIProvider,
    status: int,
    kind: type[errors.ParleyError],
    message: str,
) -> None:
    fake_openai.enqueue(api.error(status, "bad tools"))

    _, exc = await collect_until_error(openai_provider.stream(HELLO))

    assert type(exc) is kind
    assert message in exc.message
    assert len(fake_openai.requests) == 1


async def test_an_unreachable_server_is_unavailable_after_retries() -> None:
    with socket.socket() as closed:  # bound but not listening: connections are refused
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        provider = OpenAIProvider(base_url=f"http://127.0.0.1:{port}/v1", api_key=None)
        provider.retry_policy = FAST_RETRIES
        async with contextlib.aclosing(provider):
            _, exc = await collect_until_error(provider.stream(HELLO))

    assert type(exc) is errors.ProviderUnavailable
    assert exc.message.startswith("cannot reach openai")


async def test_models_lists_the_model_ids(
    fake_openai: FakeOpenAI, openai_provider: OpenAIProvider
) -> None:
    fake_openai.enqueue(api.models("llama3", "qwen3"), api.error(401, "nope"))

    assert await openai_provider.models() == ["llama3", "qwen3"]
    with pytest.raises(errors.ProviderError, match="rejected the API key"):
        await openai_provider.models()
    assert fake_openai.exchanges[0].path == "/v1/models"


def test_backoff_grows_with_jitter_and_retry_after_wins_up_to_the_cap() -> None:
    policy = RetryPolicy(base_delay=1.0, max_delay=8.0)

    assert 0.5 <= policy.delay(0) <= 1.0
    assert 2.0 <= policy.delay(2) <= 4.0
    assert 4.0 <= policy.delay(10) <= 8.0
    assert policy.delay(0, retry_after=3.0) == 3.0
    assert policy.delay(0, retry_after=120.0) == 8.0


def test_retry_after_reads_milliseconds_seconds_and_http_dates() -> None:
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)

    assert retry_after({"retry-after-ms": "250"}) == 0.25
    assert retry_after({"retry-after": "2"}) == 2.0
    assert 25 < (retry_after({"retry-after": later}) or 0) <= 30
    assert retry_after({"retry-after": "soon"}) is None
    assert retry_after({}) is None


WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
}


async def test_a_finished_reply_leaves_nothing_for_the_garbage_collector(
    fake_openai: FakeOpenAI, openai_provider: OpenAIProvider
) -> None:
    """A reply's client objects left in reference cycles wait for a full collection, which
    after hundreds of replies paused every stream for over 100 ms (httpx's response and its
    stream referred to each other)."""
    fake_openai.enqueue(*[api.text("a", "b") for _ in range(3)])
    with cyclic_garbage() as garbage:
        for _ in range(3):
            assert TextChunk(text="b") in await collect(openai_provider.stream(HELLO))
    assert types_from(garbage, *CLIENT_MODULES) == set()


PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


def _proxy_environment(monkeypatch: pytest.MonkeyPatch, **variables: str) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)


async def test_the_model_is_asked_through_the_proxy_the_environment_names(
    fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As httpx (the SDK's client) did: a deployment behind a proxy keeps working."""
    _proxy_environment(monkeypatch, HTTP_PROXY=fake_openai.url)  # the fake serves as the proxy
    fake_openai.enqueue(api.text("a", "b"))
    provider = OpenAIProvider(base_url="http://model.invalid/v1", api_key="sk-test", timeout=5)
    try:
        assert TextChunk(text="b") in await collect(provider.stream(HELLO))
    finally:
        await provider.aclose()
    exchange = fake_openai.exchanges[0]
    assert exchange.path == "/v1/chat/completions"
    assert exchange.headers["host"] == "model.invalid"  # asked for through the proxy


async def test_a_proxy_named_for_all_schemes_is_used(
    fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    _proxy_environment(monkeypatch, ALL_PROXY=fake_openai.url)
    fake_openai.enqueue(api.text("a", "b"))

    assert TextChunk(text="b") in await _ask_once("http://model.invalid/v1")

    assert fake_openai.exchanges[0].headers["host"] == "model.invalid"


@pytest.mark.parametrize(
    "variables",
    [
        {"HTTPS_PROXY": "dead"},  # names a proxy for https only
        {"HTTP_PROXY": "dead", "NO_PROXY": "localhost,127.0.0.1"},  # exempts the model's host
    ],
)
async def test_a_proxy_the_environment_does_not_name_for_the_model_is_not_used(
    fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch, variables: dict[str, str]
) -> None:
    with socket.socket() as dead:  # bound, not listening: a proxy used would refuse
        dead.bind(("127.0.0.1", 0))
        proxy = f"http://127.0.0.1:{dead.getsockname()[1]}"
        _proxy_environment(
            monkeypatch, **{name: proxy if v == "dead" else v for name, v in variables.items()}
        )
        fake_openai.enqueue(api.text("a", "b"))

        assert TextChunk(text="b") in await _ask_once(fake_openai.base_url)

    assert fake_openai.exchanges[0].headers["host"] == fake_openai.url.removeprefix("http://")


async def _ask_once(base_url: str) -> list[ProviderEvent]:
    provider = OpenAIProvider(base_url=base_url, api_key="sk-test", timeout=5)
    provider.retry_policy = RetryPolicy(max_retries=0)
    async with contextlib.aclosing(provider):
        return await collect(provider.stream(HELLO))


async def test_events_are_framed_however_the_bytes_are_cut() -> None:
    """A read may end anywhere: inside a CRLF, inside a multi-byte character, mid-field; a
    chunk's JSON may span data lines; what follows ``[DONE]`` is read and ignored."""
    stream = (
        ": a comment\r\n"
        'data: {"choices": [{"delta": {"content": "héllo ✓"}}]}\r\n\r\n'
        'event: other\ndata: {"choices": [{"delta":\ndata: {"content": "two lines"}}]}\n\n'
        'data: {"choices": [{"delta": {}, "finish_reason": "stop"}]}\r\r'
        "data: [DONE]\n\n"
        "data: cut off by the end of the body"
    ).encode()
    expected = [TextChunk(text="héllo ✓"), TextChunk(text="two lines"), FinishChunk()]

    for size in (1, 2, 3, 5, 7, len(stream)):
        transport = _replaying(stream, size)
        provider = OpenAIProvider(base_url="http://model.test/v1", api_key="x", transport=transport)
        async with contextlib.aclosing(provider):
            assert await collect(provider.stream(HELLO)) == expected, size


def _replaying(stream: bytes, size: int) -> httpx2.MockTransport:
    """A transport that answers every request with ``stream``, read ``size`` bytes at a time."""

    async def body() -> AsyncIterator[bytes]:
        for i in range(0, len(stream), size):
            yield stream[i : i + size]

    def reply(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=body())

    return httpx2.MockTransport(reply)


async def test_an_answer_that_is_not_an_event_stream_is_a_provider_error(
    fake_openai: FakeOpenAI, openai_provider: OpenAIProvider
) -> None:
    """A server that ignores ``stream: true`` and answers one JSON object, say."""
    fake_openai.enqueue(api.Scenario(steps=[b'{"choices": []}'], media_type="application/json"))

    _, exc = await collect_until_error(openai_provider.stream(HELLO))

    assert type(exc) is errors.ProviderError
    assert "malformed stream" in exc.message
    assert len(fake_openai.requests) == 1  # not retried


@pytest.mark.parametrize("status", [301, 307, 308])
async def test_a_redirect_is_reported_not_followed(
    fake_openai: FakeOpenAI, openai_provider: OpenAIProvider, status: int
) -> None:
    """Following it would re-send the whole history, and the key, somewhere else (or turn the
    POST into a GET and call the answer a missing model)."""
    elsewhere = f"{fake_openai.base_url}/moved/chat/completions"
    fake_openai.enqueue(api.error(status, "moved", headers={"location": elsewhere}))

    _, exc = await collect_until_error(openai_provider.stream(HELLO))

    assert type(exc) is errors.ProviderError
    assert f"HTTP {status}" in exc.message
    assert [exchange.path for exchange in fake_openai.exchanges] == ["/v1/chat/completions"]


async def test_a_proxy_named_without_a_scheme_is_http(
    fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    _proxy_environment(monkeypatch, HTTP_PROXY=fake_openai.url.removeprefix("http://"))
    fake_openai.enqueue(api.text("a", "b"))

    assert TextChunk(text="b") in await _ask_once("http://model.invalid/v1")

    assert fake_openai.exchanges[0].headers["host"] == "model.invalid"


async def test_a_proxy_that_never_answers_connect_times_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The name lookup and the proxy's answer are bounded by the timeout too, not only the
    TCP handshake: a stalled proxy must not hold a run for ever."""
    with socket.socket() as silent:  # accepts (the kernel's backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        _proxy_environment(monkeypatch, HTTPS_PROXY=f"127.0.0.1:{silent.getsockname()[1]}")
        provider = OpenAIProvider(base_url="https://model.invalid/v1", api_key="x", timeout=0.5)
        provider.retry_policy = RetryPolicy(max_retries=0)
        try:
            with anyio.fail_after(5):
                _, exc = await collect_until_error(provider.stream(HELLO))
        finally:
            await provider.aclose()

    assert type(exc) is errors.ProviderTimeout


async def test_credentials_in_the_base_url_are_sent_as_basic_auth(fake_openai: FakeOpenAI) -> None:
    """As httpx did (a model behind a proxy with basic auth); they are not sent in the URL."""
    host = fake_openai.base_url.removeprefix("http://")
    fake_openai.enqueue(api.text("a", "b"))
    provider = OpenAIProvider(base_url=f"http://me:p%40ss@{host}", api_key="sk-test", timeout=5)
    try:
        assert TextChunk(text="b") in await collect(provider.stream(HELLO))
    finally:
        await provider.aclose()
    exchange = fake_openai.exchanges[0]
    assert exchange.headers["authorization"] == "Basic " + base64.b64encode(b"me:p@ss").decode()
    assert exchange.path == "/v1/chat/completions"
