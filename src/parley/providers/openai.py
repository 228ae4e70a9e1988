"""The OpenAI-compatible provider: OpenAI, vLLM, llama.cpp and Ollama, told apart by base URL.

The streamed completion goes through the SDK's own aiohttp transport (``openai[aiohttp]``'s
``DefaultAioHttpClient``, an httpx2 client: proxies, certificates, redirects and credentials in
the URL are httpx2's) and is framed by httpx2's public :class:`~httpx2.EventSource`; plain
httpx cost twice the CPU per chunk (bench/RESULTS.md). The model list goes through the SDK.

Retries and the mapping of HTTP errors, which every HTTP provider shares, are in
:mod:`parley.providers.http`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp
import httpx2
import openai
import structlog

from parley import __version__, errors
from parley.providers.base import (
    ChatMessage,
    FinishChunk,
    ImagePart,
    Provider,
    ProviderEvent,
    ProviderRequest,
    ReasoningChunk,
    TextChunk,
    TextPart,
    ToolCallChunk,
    UsageChunk,
)
from parley.providers.http import (
    LOST_MID_STREAM,
    RetryPolicy,
    error_detail,
    no_model_list,
    not_the_api,
    status_error,
    stream_with_retries,
)
from parley.wire import compact

log = structlog.get_logger("parley.providers")

FinishReason = Literal["stop", "length", "tool_calls", "content_filter"]

FINISH_REASONS: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
}


OPENAI_API = "https://api.openai.com/v1"


# What the aiohttp transport raises: httpx2's errors, and aiohttp's own for the few it does not map.
TRANSPORT_ERRORS = (httpx2.TransportError, aiohttp.ClientError, TimeoutError)


class OpenAIProvider(Provider):
    """Chat Completions streamed through the SDK's aiohttp transport, with usage included; the
    model list through the SDK. The HTTP client (its connection pool) is made on first use in
    the loop that uses it: aiohttp binds a session to one loop, and a provider built outside any
    loop (the app's factory) or used from another (a test's) gets its own there."""

    reports_sent = True  # the request body tells when it has been written

    def __init__(
        self,
        *,
        base_url: str | None,
        api_key: str | None,
        timeout: float = 60.0,
        max_retries: int = 2,
        name: str = "openai",
        supports_images: bool = True,
        transport: httpx2.AsyncBaseTransport | None = None,
    ) -> None:
        self.name = name
        self.supports_images = supports_images
        self.timeout = timeout
        self.retry_policy = RetryPolicy(max_retries=max_retries)
        url = (base_url or OPENAI_API).rstrip("/")
        key = api_key or "not-needed"
        if api_key is None and url == OPENAI_API:  # a server of one's own may need none
            self.missing_key = (
                f"{name} has no API key: set OPENAI_API_KEY or [providers.{name}] api_key"
            )
        self._client = openai.AsyncOpenAI(base_url=url, api_key=key, timeout=timeout, max_retries=0)
        # The completion is not asked through the SDK's request path, which builds and
        # deep-copies its option models on every request (bench/RESULTS.md).
        target = httpx2.URL(f"{url}/chat/completions")
        # ``user:password@`` in the URL is Basic auth; aiohttp refuses it in the URL itself.
        self._auth = httpx2.BasicAuth(target.username, target.password) if target.username else None
        self._completions = target.copy_with(username=None, password=None)
        self._headers = {"Authorization": f"Bearer {key}", "User-Agent": f"parley/{__version__}"}
        self._transport = transport  # a test's, or None for aiohttp
        self._http = self._new_client()  # its certificates load here, not on the first request
        self._loop: asyncio.AbstractEventLoop | None = None

    def _client_in_loop(self) -> httpx2.AsyncClient:
        """The HTTP client, new in a loop other than the one it was first used in (aiohttp
        binds its session to that one) or once closed."""
        loop = asyncio.get_running_loop()
        unused = self._loop is None and not self._http.is_closed  # the one made in __init__
        if not unused and (self._loop is not loop or self._http.is_closed):
            self._http = self._new_client()
        self._loop = loop
        return self._http

    def _new_client(self) -> httpx2.AsyncClient:
        return openai.DefaultAioHttpClient(
            auth=self._auth,
            headers=self._headers,
            timeout=self.timeout,  # ``connect`` also bounds a proxy's answer to CONNECT
            follow_redirects=False,  # a POST of the history is not re-sent elsewhere
            # No practical cap on connections (None would be aiohttp's default of 100); idle
            # ones are dropped after 4 s: servers that close them after 5 s (uvicorn, so vLLM;
            # llama.cpp's server) would otherwise race a reused connection.
            limits=httpx2.Limits(max_connections=100_000, keepalive_expiry=4.0),
            transport=self._transport,
        )

    def stream(self, request: ProviderRequest) -> AsyncGenerator[ProviderEvent, None]:
        return stream_with_retries(
            lambda: self._attempt(request), self.retry_policy, provider=self.name
        )

    async def models(self) -> list[str]:
        """The ids the server lists; an answer that is not the API's is a one-line error."""
        try:
            raw = await self._client.models.with_raw_response.list()
        except openai.APIStatusError as exc:
            wrong = not_the_api(self.name, "the OpenAI API", exc.status_code, exc.response.headers)
            raise wrong or self._error(exc, model=None, streaming=False) from exc
        except openai.OpenAIError as exc:
            raise self._error(exc, model=None, streaming=False) from exc
        wrong = not_the_api(self.name, "the OpenAI API", raw.status_code, raw.headers)
        if wrong is not None:
            raise wrong
        try:
            return [model.id async for model in raw.parse()]
        except (AttributeError, TypeError, ValueError) as exc:
            raise no_model_list(self.name, raw.status_code) from exc

    async def aclose(self) -> None:
        await self._http.aclose()
        await self._client.close()

    async def _attempt(self, request: ProviderRequest) -> AsyncGenerator[ProviderEvent, None]:
        body = _Body(compact(request_body(request), allow_nan=False).encode(), request.on_sent)
        http = self._client_in_loop()
        outgoing = http.build_request("POST", self._completions, content=body, headers=body.headers)
        try:
            response = await http.send(outgoing, stream=True)
        except TRANSPORT_ERRORS as exc:
            body.sent()  # it will not be: a retry's back-off must not hold the client's response
            raise self._transport_error(exc, streaming=False) from exc
        state = _StreamState()
        async with contextlib.aclosing(response):
            if response.status_code >= 300:
                raise await self._status_error(response, request.model)
            async with contextlib.aclosing(self._read(response, state)) as events:
                async for event in events:
                    yield event
        if state.finish is None:
            raise errors.ProviderDisconnected(LOST_MID_STREAM)
        if state.usage is not None:
            yield state.usage

    async def _read(
        self, response: httpx2.Response, state: _StreamState
    ) -> AsyncGenerator[ProviderEvent, None]:
        frames = aiter(httpx2.EventSource(response))
        try:
            async for frame in frames:
                if frame.data.startswith("[DONE]"):
                    await _drain(frames)
                    return
                chunk = json.loads(frame.data)
                if isinstance(chunk, dict) and chunk.get("error"):
                    detail = error_detail(chunk, "an error occurred during streaming")
                    raise errors.ProviderError(f"{self.name} reported an error: {detail}")
                for event in state.events(chunk):
                    yield event
        except httpx2.SSEError as exc:  # not a stream of events, or an event over 1 MiB
            raise errors.ProviderError(f"{self.name} sent a malformed stream: {exc}") from exc
        except TRANSPORT_ERRORS as exc:
            raise self._transport_error(exc, streaming=True) from exc
        except (ValueError, TypeError, AttributeError) as exc:
            message = f"{self.name} sent a malformed stream: {exc!r:.200}"
            raise errors.ProviderError(message) from exc

    async def _status_error(self, response: httpx2.Response, model: str) -> errors.ParleyError:
        try:
            await response.aread()
        except TRANSPORT_ERRORS as exc:
            raise self._transport_error(exc, streaming=False) from exc
        try:
            body: object = response.json()
        except ValueError:
            body = response.text
        detail = error_detail(body, response.reason_phrase or f"HTTP {response.status_code}")
        return status_error(
            response.status_code, detail, response.headers, provider=self.name, model=model
        )

    def _transport_error(self, exc: BaseException, *, streaming: bool) -> errors.ParleyError:
        if _timed_out(exc):
            when = "mid-stream" if streaming else "before answering"
            return errors.ProviderTimeout(f"{self.name} was silent for {self.timeout:g}s {when}")
        if streaming:
            return errors.ProviderDisconnected(LOST_MID_STREAM)
        return errors.ProviderUnavailable(f"cannot reach {self.name}: {exc!r:.200}")

    def _error(self, exc: Exception, *, model: str | None, streaming: bool) -> errors.ParleyError:
        if isinstance(exc, openai.APITimeoutError):
            when = "mid-stream" if streaming else "before answering"
            return errors.ProviderTimeout(f"{self.name} was silent for {self.timeout:g}s {when}")
        if isinstance(exc, openai.APIConnectionError):
            if streaming:
                return errors.ProviderDisconnected(LOST_MID_STREAM)
            return errors.ProviderUnavailable(f"cannot reach {self.name}: {exc.message}")
        if isinstance(exc, openai.APIStatusError):
            detail = error_detail(exc.body, exc.message)
            return status_error(
                exc.status_code, detail, exc.response.headers, provider=self.name, model=model
            )
        if isinstance(exc, openai.APIError):
            return errors.ProviderError(f"{self.name} reported an error: {exc.message}")
        return errors.ProviderError(f"{self.name} sent a malformed stream: {exc!r}")


@dataclass
class _StreamState:
    """What one streamed completion has said so far.

    The SDK does not validate chunks, so a lenient server's missing ``choices`` or ``delta``
    arrive as ``None`` and are read as empty.
    """

    finish: FinishChunk | None = None
    usage: UsageChunk | None = None

    def events(self, chunk: object) -> Iterator[ProviderEvent]:
        if not isinstance(chunk, dict):
            raise TypeError(f"a chunk that is not a JSON object: {chunk!r:.100}")
        for choice in (chunk.get("choices") or [])[:1]:
            delta = choice.get("delta")
            if isinstance(delta, dict):
                yield from _delta_events(delta)
            reason = choice.get("finish_reason")
            if reason and self.finish is None:
                self.finish = FinishChunk(reason=FINISH_REASONS.get(reason, "stop"))
                yield self.finish
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self.usage = UsageChunk(
                prompt_tokens=usage.get("prompt_tokens") or 0,
                completion_tokens=usage.get("completion_tokens") or 0,
            )


def _delta_events(delta: dict[str, Any]) -> Iterator[ProviderEvent]:
    if reasoning := _reasoning(delta):
        yield ReasoningChunk(text=reasoning)
    if content := delta.get("content"):
        yield TextChunk(text=content)
    for position, call in enumerate(delta.get("tool_calls") or []):
        function = call.get("function") or {}
        index = call.get("index")
        yield ToolCallChunk(
            index=position if index is None else index,
            id=call.get("id"),
            name=function.get("name"),
            arguments=function.get("arguments") or "",
        )


def _reasoning(delta: dict[str, Any]) -> str | None:
    """Reasoning text, which vLLM, DeepSeek and Ollama send outside the OpenAI schema."""
    for name in ("reasoning_content", "reasoning"):
        value = delta.get(name)
        if isinstance(value, str) and value:
            return value
    return None


def request_body(request: ProviderRequest) -> dict[str, Any]:
    """The Chat Completions request; usage is always asked for, so no reply counts as zero."""
    body: dict[str, Any] = {
        "model": request.model,
        "messages": to_openai_messages(request),
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if tools := to_openai_tools(request):
        body["tools"] = tools
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.max_tokens is not None:
        body["max_tokens"] = request.max_tokens
    return body


def to_openai_messages(request: ProviderRequest) -> list[dict[str, Any]]:
    """The history as Chat Completions messages."""
    return [_message(message) for message in request.messages]


def to_openai_tools(request: ProviderRequest) -> list[dict[str, Any]]:
    return [
        {
            "type": "function",
            "function": {
                "name": tool.name,
                **({"description": tool.description} if tool.description else {}),
                "parameters": tool.parameters,
            },
        }
        for tool in request.tools
    ]


def _message(message: ChatMessage) -> dict[str, Any]:
    if message.role == "tool":
        return {
            "role": "tool",
            "tool_call_id": message.tool_call_id or "",
            "content": text_of(message.content),
        }
    out: dict[str, Any] = {"role": message.role}
    if message.role == "user":
        out["content"] = _user_content(message.content)
    elif message.role == "assistant":
        text = text_of(message.content)
        out["content"] = text if text or not message.tool_calls else None
        if message.tool_calls:
            out["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments},
                }
                for call in message.tool_calls
            ]
    else:
        out["content"] = text_of(message.content)
    if message.name:
        out["name"] = message.name
    return out


def _user_content(content: str | list[TextPart | ImagePart]) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    return [
        {"type": "text", "text": part.text}
        if isinstance(part, TextPart)
        else {"type": "image_url", "image_url": {"url": image_url(part)}}
        for part in content
    ]


def text_of(content: str | list[TextPart | ImagePart]) -> str:
    """The text of a message, images left out."""
    if isinstance(content, str):
        return content
    return "".join(part.text for part in content if isinstance(part, TextPart))


def image_url(part: ImagePart) -> str:
    """The image as a URL: its own, or a ``data:`` URL of its base64 bytes."""
    if part.data is not None:
        return f"data:{part.media_type};base64,{part.data}"
    if part.url is not None:
        return part.url
    raise errors.ValidationFailed("an image part needs either data or a url")


def _timed_out(exc: BaseException) -> bool:
    """A timeout, told by its cause: the aiohttp transport reports a refused or reset
    connection as httpx2's ``ConnectTimeout`` too, but only a timeout's cause is a TimeoutError."""
    return isinstance(exc, TimeoutError) or isinstance(exc.__cause__, TimeoutError)


class _Body(httpx2.AsyncByteStream):
    """The request body, sent with its length and let go once written (the reply then holds
    none of the history for as long as it streams); ``on_sent`` is called then."""

    def __init__(self, data: bytes, on_sent: Callable[[], None] | None) -> None:
        self.headers = {"Content-Type": "application/json", "Content-Length": str(len(data))}
        self._data: bytes | None = data
        self._on_sent = on_sent

    async def __aiter__(self) -> AsyncIterator[bytes]:
        data, self._data = self._data, None
        if data is not None:
            yield data
        del data
        self.sent()

    def sent(self) -> None:
        on_sent, self._on_sent = self._on_sent, None
        if on_sent is not None:
            on_sent()


async def _drain(frames: AsyncIterator[object], limit: float = 1.0) -> None:
    """Read what follows ``[DONE]`` (the end of the body, normally in the same packet): a
    response read to its end gives its connection back to the pool; one left unread closes it,
    and the next request pays a new connection (the benchmark's time to first token). A server
    that keeps the body open after ``[DONE]`` is given ``limit`` seconds."""
    with contextlib.suppress(*TRANSPORT_ERRORS, httpx2.SSEError):
        async with asyncio.timeout(limit):
            async for _ in frames:
                pass
