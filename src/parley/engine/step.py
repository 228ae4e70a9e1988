"""One model step: the provider's chunks become engine events, tool-call fragments become
ready calls, usage is charged as it arrives. :class:`StepAside` paces a run's bursts."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

from parley.chat import events as ev
from parley.chat.ids import new_id
from parley.chat.usage import TokenUsage
from parley.engine.budget import Budget
from parley.engine.requests import PreparedTurn
from parley.engine.tokens import estimate
from parley.providers.base import (
    ChatMessage,
    FinishChunk,
    ProviderEvent,
    ProviderRequest,
    QueueChunk,
    ReasoningChunk,
    TextChunk,
    ToolCallChunk,
    UsageChunk,
)


async def model_step(
    turn: PreparedTurn,
    messages: list[ChatMessage],
    budget: Budget,
    calls: list[ev.ToolCallReady],
) -> AsyncIterator[ev.EngineEvent]:
    """Ask the model once; the calls it makes are appended to ``calls`` as they are ready."""
    provider = turn.model.provider
    request = ProviderRequest(
        model=turn.model.model,
        messages=messages,
        tools=turn.tools.specs(),
        temperature=turn.temperature,
        max_tokens=turn.max_tokens,
        on_sent=turn.model_asked if provider.reports_sent else None,
    )
    if not provider.reports_sent:
        turn.model_asked()
    assembler = _ToolCallAssembler()
    finish = "stop"
    stream = provider.stream(request)
    produced: list[str] = []  # what the model said, until it reports its usage
    try:
        async for chunk in stream:
            if isinstance(chunk, TextChunk):  # the most of them: no detour
                if chunk.text:
                    produced.append(chunk.text)
                    yield ev.TextDelta(content=chunk.text)
            elif isinstance(chunk, FinishChunk):
                finish = chunk.reason
            elif isinstance(chunk, UsageChunk):
                produced = []
                yield await _charged(turn, chunk, budget)
            else:
                if said := _said(chunk):
                    produced.append(said)
                for event in _events(chunk, assembler):
                    yield event
    except asyncio.CancelledError:
        if produced:  # stopped before the model reported its usage: count what it was sent and said
            await _charged(turn, _estimated(turn, produced), budget)
        raise
    finally:
        turn.model_asked()  # it failed before its request left, say
        await stream.aclose()  # type: ignore[attr-defined]
    for ready in assembler.finish():
        calls.append(ready)
        yield ready
    yield ev.StepFinished(step=turn.step, finish_reason=finish)


def _events(chunk: ProviderEvent, assembler: _ToolCallAssembler) -> list[ev.EngineEvent]:
    if isinstance(chunk, ReasoningChunk):
        return [ev.ReasoningDelta(content=chunk.text)] if chunk.text else []
    if isinstance(chunk, ToolCallChunk):
        return assembler.add(chunk)
    if isinstance(chunk, QueueChunk):
        message = f"waiting for the model: position {chunk.position} in the queue"
        return [ev.ToolProgress(tool_call_id="", tool_name="", message=message)]
    return []


def _said(chunk: ProviderEvent) -> str:
    if isinstance(chunk, ReasoningChunk):
        return chunk.text
    if isinstance(chunk, ToolCallChunk):
        return (chunk.name or "") + (chunk.arguments or "")
    return ""


def _estimated(turn: PreparedTurn, produced: list[str]) -> UsageChunk:
    """A stopped step's usage, as the context window counted its request and estimates its
    reply (a provider reports usage at a stream's end, which a stopped step never reaches)."""
    said = estimate("".join(produced))
    return UsageChunk(prompt_tokens=turn.context.sent_tokens, completion_tokens=said)


async def _charged(turn: PreparedTurn, chunk: UsageChunk, budget: Budget) -> ev.Usage:
    usage = TokenUsage(prompt_tokens=chunk.prompt_tokens, completion_tokens=chunk.completion_tokens)
    turn.usage = turn.usage + usage
    await budget.charge(turn, usage)
    return ev.Usage(prompt_tokens=chunk.prompt_tokens, completion_tokens=chunk.completion_tokens)


class _ToolCallAssembler:
    """Joins tool-call fragments by index into ready calls with parsed arguments."""

    def __init__(self) -> None:
        self._calls: dict[int, dict[str, str]] = {}

    def add(self, chunk: ToolCallChunk) -> list[ev.EngineEvent]:
        out: list[ev.EngineEvent] = []
        call = self._calls.get(chunk.index)
        if call is None:
            call = {"id": chunk.id or new_id("call"), "name": chunk.name or "", "args": ""}
            self._calls[chunk.index] = call
            out.append(ev.ToolCallStarted(tool_call_id=call["id"], tool_name=call["name"]))
        elif chunk.name and not call["name"]:
            call["name"] = chunk.name
        if chunk.arguments:
            call["args"] += chunk.arguments
            out.append(ev.ToolCallArgsDelta(tool_call_id=call["id"], delta=chunk.arguments))
        return out

    def finish(self) -> list[ev.ToolCallReady]:
        ready = []
        for index in sorted(self._calls):
            call = self._calls[index]
            try:
                args = json.loads(call["args"]) if call["args"].strip() else {}
            except json.JSONDecodeError:
                args = {"__invalid_json__": call["args"]}
            if not isinstance(args, dict):
                args = {"__invalid_json__": call["args"]}
            ready.append(
                ev.ToolCallReady(tool_call_id=call["id"], tool_name=call["name"], args=args)
            )
        return ready


class StepAside:
    """When a run hands the loop to the readers of what it publishes.

    A run reading a burst (a fast model's chunks arrive many to a socket read) publishes event
    after event without waiting for anything, and its readers, which write to the clients, only
    run once it waits: the first token would go out after the whole burst was parsed, and other
    streams would wait as long. So a run steps aside at its first text and after every
    ``budget`` seconds of a burst. Two steps: one for the encoder, one for the response it
    wakes. A run that is waiting for its model between events (a gap of ``gap`` seconds or
    more) is not in a burst and never steps aside. It steps aside inside ``Engine.run``, after
    the event was published: a cancel that arrives meanwhile lands where the run handles it.
    """

    def __init__(self, budget: float = 0.002, gap: float = 0.0005) -> None:
        self.budget = budget
        self.gap = gap
        self.first_text = True
        self.burst_since = self.last = time.perf_counter()

    def due(self, event: ev.EngineEvent) -> bool:
        now = time.perf_counter()
        if now - self.last >= self.gap:
            self.burst_since = now
        self.last = now
        if self.first_text and isinstance(event, ev.TextDelta):
            self.first_text = False
            return True
        return now - self.burst_since >= self.budget

    async def give(self) -> None:
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        self.burst_since = self.last = time.perf_counter()
