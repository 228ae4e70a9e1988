"""The OpenAI-compatible provider: OpenAI, vLLM, llama.cpp and Ollama, told apart by base URL.

The streamed completion goes over aiohttp (the transport the OpenAI SDK itself offers for
throughput, ``openai[aiohttp]``): on a cold request httpx and httpcore took 1.8 ms of CPU from
the call to the first chunk where aiohttp takes 0.7, and 34 µs per streamed chunk where aiohttp
takes 14 (bench/RESULTS.md, eighth session). The SSE framing is httpx-sse's public
``EventSource``, over aiohttp's bytes.

It also holds what every HTTP provider shares (:class:`RetryPolicy`, :func:`stream_with_retries`,
:func:`status_error`): a request is retried on 429, 5xx and lost connections, but only until the
first event has been yielded; after that a failure ends the stream at once.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import email.utils
import itertools
import json
import os
import random
import ssl
import urllib.parse
import urllib.request
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Callable,
    Iterator,
    Mapping,
)
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import aiohttp
import certifi
import httpx
import openai
import structlog
import yarl
from httpx_sse import EventSource

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
from parley.wire import compact

log = structlog.get_logger("parley.providers")

LOST_MID_STREAM = "connection to the model was lost mid-stream"

FinishReason = Literal["stop", "length", "tool_calls", "content_filter"]

FINISH_REASONS: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
}


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry before the first event: backoff with jitter."""

    max_retries: int = 2
    base_delay: float = 0.5
    max_delay: float = 8.0

    def delay(self, retry: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number ``retry`` (0-based); Retry-After wins, capped."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_delay)
        backoff = min(self.max_delay, self.base_delay * 2.0**retry)
        return backoff * random.uniform(0.5, 1.0)


async def stream_with_retries(
    attempt: Callable[[], AsyncGenerator[ProviderEvent, None]],
    policy: RetryPolicy,
    *,
    provider: str,
) -> AsyncGenerator[ProviderEvent, None]:
    """Run ``attempt()`` again after a :class:`~parley.errors.ProviderUnavailable` until it yields."""
    for retry in itertools.count():
        events = attempt()
        started = False
        try:
            async for event in events:
                started = True
                yield event
            return
        except errors.ProviderUnavailable as exc:
            if started or retry >= policy.max_retries:
                raise
            delay = policy.delay(retry, _seconds(exc.extra.get("retry_after")))
            log.warning(
                "provider_retry", provider=provider, retry=retry + 1, delay=delay, error=str(exc)
            )
        finally:
            await events.aclose()
        await asyncio.sleep(delay)


OPENAI_API = "https://api.openai.com/v1"


def not_the_api(
    provider: str, api: str, status: int, headers: Mapping[str, str]
) -> errors.ProviderError | None:
    """The error for an answer that is not JSON (a web page at a wrong base URL, say), in one
    line instead of the SDK's own; None for a JSON answer."""
    media = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media == "application/json" or media.endswith("+json"):
        return None
    kind = "HTML" if "html" in media else (media or "a body with no content type")
    message = f"{provider} answered {kind}, not {api} (status {status}) — check the base URL"
    return errors.ProviderError(message)


def no_model_list(provider: str, status: int) -> errors.ProviderError:
    message = f"{provider} answered with no list of models (status {status})"
    return errors.ProviderError(f"{message} — check the base URL")


def env_proxy(url: str) -> str | None:
    """The proxy ``HTTPS_PROXY``/``HTTP_PROXY``/``ALL_PROXY`` name for ``url`` unless
    ``NO_PROXY`` exempts its host: what httpx (the SDK's client) and curl take."""
    parts = urllib.parse.urlsplit(url)
    if urllib.request.proxy_bypass(parts.hostname or ""):  # NO_PROXY (and macOS settings)
        return None
    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if proxy and "://" not in proxy:
        proxy = f"http://{proxy}"  # ``proxy:3128``, as httpx and curl read it
    return proxy or None


def tls_context() -> ssl.SSLContext:
    """The certificates httpx trusts: ``SSL_CERT_FILE``/``SSL_CERT_DIR`` if set, else certifi's
    bundle (not only the system's, which a slim image or macOS's Python may lack)."""
    cafile, capath = os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR")
    if not cafile and not capath:
        cafile = certifi.where()
    return ssl.create_default_context(cafile=cafile or None, capath=capath or None)


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds from ``retry-after-ms`` or ``retry-after`` (seconds or an HTTP date), if given."""
    millis = _number(headers.get("retry-after-ms"))
    if millis is not None:
        return millis / 1000
    value = headers.get("retry-after")
    if value is None:
        return None
    seconds = _number(value)
    if seconds is not None:
        return seconds
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _seconds(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def error_detail(body: object, fallback: str) -> str:
    """The ``error.message`` of an API error body, or ``fallback``."""
    inner = body.get("error", body) if isinstance(body, dict) else None
    message = inner.get("message") if isinstance(inner, dict) else None
    return message if isinstance(message, str) and message else fallback


def status_error(
    status: int, detail: str, headers: Mapping[str, str], *, provider: str, model: str | None
) -> errors.ParleyError:
    """The parley error for an HTTP error status from a model API."""
    if status in (401, 403):
        return errors.ProviderError("provider rejected the API key", provider=provider)
    if status == 404 and model is not None:
        return errors.InvalidModel(f"{provider} has no model {model!r}: {detail}")
    if status == 429 or status >= 500:
        message = f"{provider} answered HTTP {status}: {detail}"
        return errors.ProviderUnavailable(message, retry_after=retry_after(headers))
    return errors.ProviderError(f"{provider} refused the request (HTTP {status}): {detail}")


class OpenAIProvider(Provider):
    """Chat Completions streamed over aiohttp, with usage included; the model list through the
    official SDK. The session (its connection pool) is made on first use in the loop that uses
    it: aiohttp binds a session to one loop, and a provider built outside any loop (the app's
    factory) or used from another (a test's) gets its own there."""

    reports_sent = True  # aiohttp's trace tells when the request body is written

    def __init__(
        self,
        *,
        base_url: str | None,
        api_key: str | None,
        timeout: float = 60.0,
        max_retries: int = 2,
        name: str = "openai",
        supports_images: bool = True,
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
        # The streamed completion goes over aiohttp, not the SDK: its request path built and
        # deep-copied its option models on every request and decoded each chunk through its
        # own layers (bench/RESULTS.md); the wire format is the same, errors map the same.
        self._headers = {
            "Authorization": f"Bearer {key}",
            "User-Agent": f"parley/{__version__}",
            "Content-Type": "application/json",
        }
        target = yarl.URL(f"{url}/chat/completions")
        if target.user is not None:  # ``user:password@`` in the URL: Basic auth, as httpx sent
            pair = f"{target.user}:{target.password or ''}".encode()
            self._headers["Authorization"] = f"Basic {base64.b64encode(pair).decode()}"
            target = target.with_user(None)
        self._completions = str(target)
        # Certificates as httpx (the SDK) trusts them; built here, not on the first request.
        self._tls = tls_context() if url.startswith("https:") else None
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _http(self) -> aiohttp.ClientSession:
        """The connection pool, made in the loop that uses it (aiohttp binds it to one)."""
        session = self._session
        loop = asyncio.get_running_loop()
        if session is None or session.closed or self._loop is not loop:
            self._loop = loop
            sent = aiohttp.TraceConfig()
            sent.on_request_chunk_sent.append(_sent)
            sent.on_request_exception.append(_sent)
            session = self._session = aiohttp.ClientSession(
                # No cap on connections; idle ones are dropped after 4 s: servers that close
                # them after 5 s (uvicorn, so vLLM; llama.cpp's server) would otherwise race a
                # reused connection.
                connector=aiohttp.TCPConnector(
                    limit=0, keepalive_timeout=4.0, ssl=self._tls if self._tls else True
                ),
                # ``connect`` also bounds the name lookup and a proxy's answer to CONNECT,
                # which ``sock_connect`` (the TCP and TLS handshakes) does not
                timeout=aiohttp.ClientTimeout(
                    total=None,
                    connect=self.timeout,
                    sock_connect=self.timeout,
                    sock_read=self.timeout,
                ),
                headers=self._headers,
                trace_configs=[sent],
                # The proxy the environment names, found once (aiohttp's ``trust_env`` would
                # look it up, and read ~/.netrc, on a worker thread for every request).
                proxy=env_proxy(self._completions),
                cookie_jar=aiohttp.DummyCookieJar(),  # a model API's cookies are no one's
            )
        return session

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
        if self._session is not None:
            await self._session.close()
        await self._client.close()

    async def _attempt(self, request: ProviderRequest) -> AsyncGenerator[ProviderEvent, None]:
        # The body is given as bytes and not kept: the reply's objects do not hold the
        # request's body (the whole history) for as long as it streams.
        body = compact(request_body(request), allow_nan=False).encode()
        state = _StreamState()
        try:
            async with self._http().post(
                self._completions,
                data=body,
                trace_request_ctx={"on_sent": request.on_sent},
                allow_redirects=False,  # a POST of the history is not re-sent elsewhere
            ) as response:
                del body
                if response.status >= 300:
                    raise await self._status_error(response, request.model)
                async with contextlib.aclosing(self._read(response, state)) as events:
                    async for event in events:
                        yield event
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise self._transport_error(exc, streaming=False) from exc
        if state.finish is None:
            raise errors.ProviderUnavailable(LOST_MID_STREAM)
        if state.usage is not None:
            yield state.usage

    async def _read(
        self, response: aiohttp.ClientResponse, state: _StreamState
    ) -> AsyncGenerator[ProviderEvent, None]:
        try:
            async with contextlib.aclosing(
                sse_events(response.content.iter_any()).aiter_sse()
            ) as sse:
                async for frame in sse:
                    if frame.data.startswith("[DONE]"):
                        await _drain(response)
                        return
                    chunk = json.loads(frame.data)
                    if isinstance(chunk, dict) and chunk.get("error"):
                        detail = error_detail(chunk, "an error occurred during streaming")
                        raise errors.ProviderError(f"{self.name} reported an error: {detail}")
                    for event in state.events(chunk):
                        yield event
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise self._transport_error(exc, streaming=True) from exc
        except (ValueError, TypeError, AttributeError) as exc:
            message = f"{self.name} sent a malformed stream: {exc!r:.200}"
            raise errors.ProviderError(message) from exc

    async def _status_error(
        self, response: aiohttp.ClientResponse, model: str
    ) -> errors.ParleyError:
        raw = await response.read()
        text = raw.decode(response.get_encoding(), errors="replace")
        try:
            body: object = json.loads(text)
        except ValueError:
            body = text
        detail = error_detail(body, response.reason or f"HTTP {response.status}")
        return status_error(
            response.status, detail, response.headers, provider=self.name, model=model
        )

    def _transport_error(self, exc: BaseException, *, streaming: bool) -> errors.ParleyError:
        if isinstance(exc, TimeoutError):  # aiohttp's socket timeouts are TimeoutErrors too
            when = "mid-stream" if streaming else "before answering"
            return errors.ProviderTimeout(f"{self.name} was silent for {self.timeout:g}s {when}")
        if streaming:
            return errors.ProviderUnavailable(LOST_MID_STREAM)
        return errors.ProviderUnavailable(f"cannot reach {self.name}: {exc!r:.200}")

    def _error(self, exc: Exception, *, model: str | None, streaming: bool) -> errors.ParleyError:
        if isinstance(exc, openai.APITimeoutError):
            when = "mid-stream" if streaming else "before answering"
            return errors.ProviderTimeout(f"{self.name} was silent for {self.timeout:g}s {when}")
        if isinstance(exc, openai.APIConnectionError):
            if streaming:
                return errors.ProviderUnavailable(LOST_MID_STREAM)
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


async def _sent(
    _session: aiohttp.ClientSession,
    context: Any,
    _params: object,
) -> None:
    """aiohttp's trace, as the body is written (or a step before it failed: a retry's back-off
    should not hold the client's response): the request's ``on_sent``."""
    on_sent = (context.trace_request_ctx or {}).get("on_sent")
    if on_sent is not None:
        on_sent()


class _Body(httpx.AsyncByteStream):
    """Bytes as they arrive (aiohttp's body) as an httpx byte stream, for :class:`EventSource`."""

    def __init__(self, received: AsyncIterable[bytes]) -> None:
        self._received = received

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._received:
            yield chunk


def sse_events(received: AsyncIterable[bytes]) -> EventSource:
    """The server-sent events of the body, framed by httpx-sse's public :class:`EventSource`
    (lines end in CR, LF or CRLF and may be split anywhere across reads; an event is
    dispatched at its blank line, so one cut off by the end of the body is dropped)."""
    headers = {"content-type": "text/event-stream; charset=utf-8"}
    return EventSource(httpx.Response(200, headers=headers, stream=_Body(received)))


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


async def _drain(response: aiohttp.ClientResponse, limit: float = 1.0) -> None:
    """Read what follows ``[DONE]`` (the end of the body, normally in the same packet): a
    response read to its end gives its connection back to the pool; one left unread closes it,
    and the next request pays a new connection (the benchmark's time to first token). A server
    that keeps the body open after ``[DONE]`` is given ``limit`` seconds."""
    with contextlib.suppress(TimeoutError, aiohttp.ClientError):
        async with asyncio.timeout(limit):
            await response.read()
