"""The Anthropic Messages provider over the official SDK, streamed as raw events.

Tool calls are numbered 0, 1, 2 in the order their blocks start (text and thinking blocks are
not counted); the finish comes with ``message_delta`` and the usage after ``message_stop``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import anthropic
import httpx2
from anthropic.types import MessageParam, RawMessageStreamEvent, ToolParam

from parley import errors
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
from parley.providers.openai import FinishReason, text_of

API = "the Anthropic API"
ANTHROPIC_API = "https://api.anthropic.com"
DEFAULT_MAX_TOKENS = 4096

STOP_REASONS: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

# The HTTP status an ``error`` event inside a 200 stream stands for.
ERROR_TYPE_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}


class AnthropicProvider(Provider):
    """Claude models through ``messages.create(stream=True)``."""

    def __init__(
        self,
        *,
        base_url: str | None,
        api_key: str | None,
        timeout: float = 60.0,
        max_retries: int = 2,
        name: str = "anthropic",
        supports_images: bool = True,
    ) -> None:
        self.name = name
        self.supports_images = supports_images
        self.timeout = timeout
        self.retry_policy = RetryPolicy(max_retries=max_retries)
        if api_key is None and base_url in (None, ANTHROPIC_API):
            self.missing_key = (
                f"{name} has no API key: set ANTHROPIC_API_KEY or [providers.{name}] api_key"
            )
        self._client = anthropic.AsyncAnthropic(
            base_url=base_url or ANTHROPIC_API,
            api_key=api_key or "not-needed",
            timeout=timeout,
            max_retries=0,
        )

    def stream(self, request: ProviderRequest) -> AsyncGenerator[ProviderEvent, None]:
        return stream_with_retries(
            lambda: self._attempt(request), self.retry_policy, provider=self.name
        )

    async def models(self) -> list[str]:
        """The ids the server lists; an answer that is not the API's is a one-line error."""
        try:
            raw = await self._client.models.with_raw_response.list()
        except anthropic.APIStatusError as exc:
            wrong = not_the_api(self.name, API, exc.status_code, exc.response.headers)
            raise wrong or self._error(exc, model=None, streaming=False) from exc
        except anthropic.AnthropicError as exc:
            raise self._error(exc, model=None, streaming=False) from exc
        wrong = not_the_api(self.name, API, raw.status_code, raw.headers)
        if wrong is not None:
            raise wrong
        try:
            return [model.id async for model in await raw.parse()]
        except (AttributeError, TypeError, ValueError) as exc:
            raise no_model_list(self.name, raw.status_code) from exc

    async def aclose(self) -> None:
        await self._client.close()

    async def _attempt(self, request: ProviderRequest) -> AsyncGenerator[ProviderEvent, None]:
        system, messages = to_anthropic_messages(request.messages)
        try:
            stream = await self._client.messages.create(
                model=request.model,
                messages=cast("list[MessageParam]", messages),
                system=system or anthropic.omit,
                tools=cast("list[ToolParam]", to_anthropic_tools(request)) or anthropic.omit,
                extra_body=_sampling(request),
                max_tokens=request.max_tokens or DEFAULT_MAX_TOKENS,
                stream=True,
            )
        except anthropic.AnthropicError as exc:
            raise self._error(exc, model=request.model, streaming=False) from exc
        async with stream:
            state = _StreamState()
            try:
                async for event in stream:
                    for chunk in state.events(event):
                        yield chunk
            except Exception as exc:
                raise self._error(exc, model=request.model, streaming=True) from exc
            if state.finish is None:
                raise errors.ProviderDisconnected(LOST_MID_STREAM)
            if state.counted:
                yield UsageChunk(prompt_tokens=state.prompt, completion_tokens=state.completion)

    def _error(self, exc: Exception, *, model: str | None, streaming: bool) -> errors.ParleyError:
        if isinstance(exc, anthropic.APITimeoutError | httpx2.TimeoutException):
            when = "mid-stream" if streaming else "before answering"
            return errors.ProviderTimeout(f"{self.name} was silent for {self.timeout:g}s {when}")
        if isinstance(exc, anthropic.APIConnectionError | httpx2.TransportError):
            if streaming:
                return errors.ProviderDisconnected(LOST_MID_STREAM)
            return errors.ProviderUnavailable(f"cannot reach {self.name}: {exc}")
        if isinstance(exc, anthropic.APIStatusError):
            status = exc.status_code
            if status < 400:  # an ``error`` event inside the stream
                status = ERROR_TYPE_STATUS.get(exc.type or "", 502)
            detail = error_detail(exc.body, exc.message)
            headers = exc.response.headers
            return status_error(status, detail, headers, provider=self.name, model=model)
        if isinstance(exc, anthropic.APIError):
            return errors.ProviderError(f"{self.name} reported an error: {exc.message}")
        return errors.ProviderError(f"{self.name} sent a malformed stream: {exc!r}")


@dataclass
class _StreamState:
    """What one streamed message has said so far."""

    tool_numbers: dict[int, int] = field(default_factory=dict)  # block index -> tool call index
    prompt: int = 0
    completion: int = 0
    counted: bool = False
    finish: FinishChunk | None = None

    def events(self, event: RawMessageStreamEvent) -> Iterator[ProviderEvent]:
        if event.type == "message_start":
            self._count(event.message.usage)
        elif event.type == "content_block_start":
            yield from self._block_start(event.index, event.content_block)
        elif event.type == "content_block_delta":
            yield from self._delta(event.index, event.delta)
        elif event.type == "message_delta":
            self._count(event.usage)
            if event.delta.stop_reason and self.finish is None:
                self.finish = FinishChunk(reason=STOP_REASONS.get(event.delta.stop_reason, "stop"))
                yield self.finish

    def _block_start(self, index: int, block: Any) -> Iterator[ProviderEvent]:
        if block.type == "tool_use":
            number = self.tool_numbers[index] = len(self.tool_numbers)
            yield ToolCallChunk(index=number, id=block.id, name=block.name)
        elif block.type == "text" and block.text:
            yield TextChunk(text=block.text)
        elif block.type == "thinking" and block.thinking:
            yield ReasoningChunk(text=block.thinking)

    def _delta(self, index: int, delta: Any) -> Iterator[ProviderEvent]:
        if delta.type == "text_delta" and delta.text:
            yield TextChunk(text=delta.text)
        elif delta.type == "thinking_delta" and delta.thinking:
            yield ReasoningChunk(text=delta.thinking)
        elif delta.type == "input_json_delta" and delta.partial_json:
            number = self.tool_numbers.get(index)
            if number is not None:
                yield ToolCallChunk(index=number, arguments=delta.partial_json)

    def _count(self, usage: Any) -> None:
        """Take the (cumulative) token counts; prompt tokens include cache reads and writes."""
        if usage is None:  # some Anthropic-compatible servers send none
            return
        self.counted = True
        if usage.input_tokens is not None:
            cached = (usage.cache_creation_input_tokens or 0) + (usage.cache_read_input_tokens or 0)
            self.prompt = usage.input_tokens + cached
        if usage.output_tokens is not None:
            self.completion = usage.output_tokens


def to_anthropic_messages(
    history: list[ChatMessage],
) -> tuple[str, list[dict[str, Any]]]:
    """The system prompt, and the rest as Messages turns (tool results become user turns)."""
    system: list[str] = []
    messages: list[dict[str, Any]] = []
    after_tool = False
    for message in history:
        if message.role == "system":
            system.append(text_of(message.content))
        elif message.role == "tool":
            result = _tool_result(message)
            if after_tool:
                messages[-1]["content"].append(result)
            else:
                messages.append({"role": "user", "content": [result]})
        else:
            messages.append({"role": message.role, "content": _content(message)})
        after_tool = message.role == "tool"
    return "\n\n".join(part for part in system if part), messages


def _sampling(request: ProviderRequest) -> dict[str, Any] | None:
    """``temperature``, only when set: SDK 1.x dropped it from the signature, the API kept it."""
    return None if request.temperature is None else {"temperature": request.temperature}


def to_anthropic_tools(request: ProviderRequest) -> list[dict[str, Any]]:
    return [
        {
            "name": tool.name,
            **({"description": tool.description} if tool.description else {}),
            "input_schema": tool.parameters,
        }
        for tool in request.tools
    ]


def _tool_result(message: ChatMessage) -> dict[str, Any]:
    return {
        "type": "tool_result",
        "tool_use_id": message.tool_call_id or "",
        "content": text_of(message.content),
    }


def _content(message: ChatMessage) -> str | list[dict[str, Any]]:
    if isinstance(message.content, str) and not message.tool_calls:
        return message.content
    content = message.content
    parts = [TextPart(text=content)] if isinstance(content, str) else content
    blocks = [_block(part) for part in parts if not isinstance(part, TextPart) or part.text]
    blocks += [
        {"type": "tool_use", "id": call.id, "name": call.name, "input": _input(call.arguments)}
        for call in message.tool_calls
    ]
    return blocks


def _block(part: TextPart | ImagePart) -> dict[str, Any]:
    if isinstance(part, TextPart):
        return {"type": "text", "text": part.text}
    if part.data is not None:
        source = {"type": "base64", "media_type": part.media_type, "data": part.data}
        return {"type": "image", "source": source}
    if part.url is not None:
        return {"type": "image", "source": {"type": "url", "url": part.url}}
    raise errors.ValidationFailed("an image part needs either data or a url")


def _input(arguments: str) -> dict[str, Any]:
    """Tool-call arguments as the object Anthropic wants; text that is not one is kept whole."""
    try:
        value = json.loads(arguments) if arguments.strip() else {}
    except json.JSONDecodeError:
        value = None
    return value if isinstance(value, dict) else {"_raw_arguments": arguments}
