"""A fake Anthropic Messages server, scripted per request.

::

    async with FakeAnthropic() as fake:
        fake.enqueue(text("Hel", "lo"), overloaded())
        client = AsyncAnthropic(base_url=fake.base_url, api_key="x")

The builders write Anthropic's named SSE events: ``message_start``, ``content_block_start`` /
``_delta`` / ``_stop`` per block, ``message_delta`` with ``stop_reason`` and usage, and
``message_stop``.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

from tests.fakes._server import (
    Drop,
    Exchange,
    FakeServer,
    Hang,
    Pause,
    Scenario,
    Step,
    hang,
    json_reply,
)

__all__ = [
    "Drop",
    "Exchange",
    "FakeAnthropic",
    "Hang",
    "Pause",
    "Scenario",
    "endless",
    "error",
    "error_event",
    "event",
    "fast",
    "finish",
    "hang",
    "malformed",
    "message_start",
    "models",
    "overloaded",
    "paced",
    "sse",
    "text",
    "text_block",
    "thinking_block",
    "tool_use",
    "tool_use_block",
]


class FakeAnthropic(FakeServer):
    routes = (("POST", "/v1/messages"), ("GET", "/v1/models"))

    @property
    def base_url(self) -> str:
        return self.url


def event(type: str, **data: Any) -> bytes:
    """One named SSE event whose data carries the same ``type``."""
    return f"event: {type}\ndata: {json.dumps({'type': type, **data})}\n\n".encode()


def sse(*steps: Step, interval: float = 0.0) -> Scenario:
    return Scenario(steps=list(steps), interval=interval)


def message_start(input_tokens: int = 10, **usage: int) -> bytes:
    message: dict[str, Any] = {
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": "fake-model",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": input_tokens, "output_tokens": 1, **usage},
    }
    return event("message_start", message=message)


def text_block(index: int, *pieces: str) -> list[bytes]:
    start = event("content_block_start", index=index, content_block={"type": "text", "text": ""})
    deltas = [
        event("content_block_delta", index=index, delta={"type": "text_delta", "text": piece})
        for piece in pieces
    ]
    return [start, *deltas, event("content_block_stop", index=index)]


def thinking_block(index: int, *pieces: str) -> list[bytes]:
    block = {"type": "thinking", "thinking": "", "signature": ""}
    deltas = [
        event("content_block_delta", index=index, delta={"type": "thinking_delta", "thinking": p})
        for p in pieces
    ]
    signature = {"type": "signature_delta", "signature": "sig"}
    return [
        event("content_block_start", index=index, content_block=block),
        *deltas,
        event("content_block_delta", index=index, delta=signature),
        event("content_block_stop", index=index),
    ]


def tool_use_block(index: int, call_id: str, name: str, *pieces: str) -> list[bytes]:
    block = {"type": "tool_use", "id": call_id, "name": name, "input": {}}
    deltas = [
        event(
            "content_block_delta",
            index=index,
            delta={"type": "input_json_delta", "partial_json": p},
        )
        for p in ("", *pieces)
    ]
    return [
        event("content_block_start", index=index, content_block=block),
        *deltas,
        event("content_block_stop", index=index),
    ]


def finish(stop_reason: str = "end_turn", output_tokens: int = 5) -> list[bytes]:
    delta = {"stop_reason": stop_reason, "stop_sequence": None}
    usage = {"output_tokens": output_tokens}
    return [event("message_delta", delta=delta, usage=usage), event("message_stop")]


def text(
    *pieces: str,
    stop_reason: str = "end_turn",
    input_tokens: int = 10,
    output_tokens: int = 5,
    thinking: tuple[str, ...] = (),
    interval: float = 0.0,
) -> Scenario:
    """A complete text answer streamed in ``pieces`` (after an optional thinking block)."""
    blocks = thinking_block(0, *thinking) if thinking else []
    return sse(
        message_start(input_tokens),
        *blocks,
        *text_block(1 if thinking else 0, *pieces),
        *finish(stop_reason, output_tokens),
        interval=interval,
    )


def tool_use(
    *calls: tuple[str, str, list[str]], preamble: str | None = None, output_tokens: int = 16
) -> Scenario:
    """An optional text block, then tool calls ``(id, name, argument pieces)``."""
    blocks = text_block(0, preamble) if preamble else []
    first = 1 if preamble else 0
    for offset, (call_id, name, pieces) in enumerate(calls):
        blocks += tool_use_block(first + offset, call_id, name, *pieces)
    return sse(message_start(44), *blocks, *finish("tool_use", output_tokens))


def error(
    status: int, type: str, message: str, *, headers: dict[str, str] | None = None
) -> Scenario:
    """An HTTP error with Anthropic's ``{"type": "error", "error": {...}}`` body."""
    body = {"type": "error", "error": {"type": type, "message": message}}
    return json_reply(body, status, headers)


def overloaded() -> Scenario:
    return error(529, "overloaded_error", "Overloaded")


def error_event(type: str, message: str) -> bytes:
    """An ``error`` event inside a stream that began well."""
    return event("error", error={"type": type, "message": message})


def malformed(*before: bytes) -> Scenario:
    """Some good events, then an event whose data is ``{not json``."""
    return sse(*before, b"event: content_block_delta\ndata: {not json\n\n")


def fast(n: int, piece: str = "x") -> Scenario:
    """``n`` text deltas as fast as the socket takes them (a benchmark load)."""
    return text(*([piece] * n))


def paced(n: int, every_ms: float, piece: str = "x") -> Scenario:
    """``n`` text deltas, one every ``every_ms`` milliseconds."""
    return text(*([piece] * n), interval=every_ms / 1000)


def endless(piece: str = "x", every_ms: float = 0.0) -> Scenario:
    """Text deltas until the client goes away (single use: enqueue, not ``default``)."""
    delta = event("content_block_delta", index=0, delta={"type": "text_delta", "text": piece})
    head = [message_start(), *text_block(0)[:1]]
    return Scenario(steps=itertools.chain(head, itertools.repeat(delta)), interval=every_ms / 1000)


def models(*ids: str) -> Scenario:
    """The ``GET /v1/models`` page."""
    data = [
        {"id": i, "type": "model", "display_name": i, "created_at": "2025-01-01T00:00:00Z"}
        for i in ids
    ]
    first, last = (ids[0], ids[-1]) if ids else (None, None)
    return json_reply({"data": data, "has_more": False, "first_id": first, "last_id": last})
