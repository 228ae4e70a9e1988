"""A fake OpenAI Chat Completions server, scripted per request.

::

    async with FakeOpenAI() as fake:
        fake.enqueue(text("Hel", "lo"), error(429, "slow down", headers={"retry-after": "0"}))
        client = AsyncOpenAI(base_url=fake.base_url, api_key="x")
        ...
        assert fake.requests[0]["stream_options"] == {"include_usage": True}

The builders write the wire shapes of ``protocols.md`` section 2: a role chunk, content (or
tool-call fragments), a ``finish_reason`` chunk, a usage chunk with empty ``choices``, ``[DONE]``.
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
    "DONE",
    "Drop",
    "Exchange",
    "FakeOpenAI",
    "Hang",
    "Pause",
    "Scenario",
    "chunk",
    "endless",
    "error",
    "fast",
    "frame",
    "hang",
    "malformed",
    "models",
    "paced",
    "sse",
    "text",
    "text_deltas",
    "tool_call_deltas",
    "tool_calls",
]


class FakeOpenAI(FakeServer):
    routes = (("POST", "/v1/chat/completions"), ("GET", "/v1/models"))

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"


def chunk(
    delta: dict[str, Any] | None = None,
    *,
    finish: str | None = None,
    usage: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """One ``chat.completion.chunk``; with ``usage`` it is the usage chunk (no choices)."""
    body: dict[str, Any] = {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "fake-model",
    }
    if usage is not None:
        prompt, completion = usage
        body["choices"] = []
        body["usage"] = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
    else:
        choice = {"index": 0, "delta": delta or {}, "finish_reason": finish, "logprobs": None}
        body["choices"] = [choice]
    return body


def frame(data: dict[str, Any] | str) -> bytes:
    """An SSE event; a string is sent verbatim after ``data: ``."""
    text = data if isinstance(data, str) else json.dumps(data)
    return f"data: {text}\n\n".encode()


DONE = frame("[DONE]")


def sse(*data: dict[str, Any] | str | Step, done: bool = True, interval: float = 0.0) -> Scenario:
    """A stream of the given chunks (dicts, raw strings, or steps such as :class:`Drop`)."""
    steps: list[Step] = [
        item if isinstance(item, Pause | Hang | Drop | bytes) else frame(item) for item in data
    ]
    return Scenario(steps=[*steps, DONE] if done else steps, interval=interval)


def text_deltas(*pieces: str, reasoning: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """The role chunk, then reasoning and content chunks, without the finish."""
    role = chunk({"role": "assistant", "content": "", "refusal": None})
    thoughts = [chunk({"reasoning_content": piece}) for piece in reasoning]
    return [role, *thoughts, *(chunk({"content": piece}) for piece in pieces)]


def text(
    *pieces: str,
    finish: str = "stop",
    usage: tuple[int, int] | None = (5, 2),
    reasoning: tuple[str, ...] = (),
    interval: float = 0.0,
) -> Scenario:
    """A complete text answer streamed in ``pieces``."""
    tail = [chunk(finish=finish)] + ([chunk(usage=usage)] if usage else [])
    return sse(*text_deltas(*pieces, reasoning=reasoning), *tail, interval=interval)


def tool_call_deltas(index: int, call_id: str, name: str, *arguments: str) -> list[dict[str, Any]]:
    """A tool call as fragments: the first names it, later ones carry argument text."""
    first = {
        "index": index,
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": ""},
    }
    later = [{"index": index, "function": {"arguments": piece}} for piece in arguments]
    return [chunk({"tool_calls": [call]}) for call in [first, *later]]


def tool_calls(
    *calls: tuple[str, str, list[str]], usage: tuple[int, int] | None = (44, 16)
) -> Scenario:
    """Tool calls ``(id, name, argument pieces)`` as in protocols.md 2.4, then finish and usage."""
    role = chunk({"role": "assistant", "content": None})
    fragments = [
        delta
        for index, (call_id, name, pieces) in enumerate(calls)
        for delta in tool_call_deltas(index, call_id, name, *pieces)
    ]
    tail = [chunk(finish="tool_calls")] + ([chunk(usage=usage)] if usage else [])
    return sse(role, *fragments, *tail)


def error(
    status: int,
    message: str,
    *,
    type: str = "invalid_request_error",
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> Scenario:
    """An HTTP error with OpenAI's ``{"error": {...}}`` body."""
    body = {"error": {"message": message, "type": type, "param": None, "code": code}}
    return json_reply(body, status, headers)


def malformed(*before: dict[str, Any]) -> Scenario:
    """Some good chunks, then ``data: {not json``."""
    return sse(*before, "{not json", done=False)


def fast(n: int, piece: str = "x") -> Scenario:
    """``n`` text chunks as fast as the socket takes them (a benchmark load)."""
    return text(*([piece] * n))


def paced(n: int, every_ms: float, piece: str = "x") -> Scenario:
    """``n`` text chunks, one every ``every_ms`` milliseconds."""
    return text(*([piece] * n), interval=every_ms / 1000)


def endless(piece: str = "x", every_ms: float = 0.0) -> Scenario:
    """Text chunks until the client goes away (single use: enqueue, not ``default``)."""
    deltas = itertools.chain(text_deltas(), itertools.repeat(chunk({"content": piece})))
    return Scenario(steps=(frame(delta) for delta in deltas), interval=every_ms / 1000)


def models(*ids: str) -> Scenario:
    """The ``GET /v1/models`` list."""
    data = [{"id": i, "object": "model", "created": 0, "owned_by": "fake"} for i in ids]
    return json_reply({"object": "list", "data": data})
