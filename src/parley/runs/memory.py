"""The in-process run hub: the default when no Redis is configured."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from parley.chat.events import (
    EngineEvent,
    ReasoningDelta,
    TextDelta,
    ToolCallArgsDelta,
    is_terminal,
)
from parley.runs.base import ControlHandler

# A run's log is kept for ``ttl`` seconds after it ends, for clients that resume it. Most of it is
# per-token deltas, kept as strings (which the garbage collector never tracks, so they bring no
# young collection nearer) and rebuilt when read (bench/RESULTS.md, "Moved from docstrings").
_Kept = EngineEvent | str


def _keep(event: EngineEvent) -> _Kept:
    match event:
        case TextDelta():
            return "t" + event.content
        case ReasoningDelta():
            return "r" + event.content
        case ToolCallArgsDelta():
            return f"a{len(event.tool_call_id)}:{event.tool_call_id}{event.delta}"
    return event


def _event(kept: _Kept) -> EngineEvent:
    if not isinstance(kept, str):
        return kept
    kind, rest = kept[0], kept[1:]
    if kind == "t":
        return TextDelta(content=rest)
    if kind == "r":
        return ReasoningDelta(content=rest)
    size, _, rest = rest.partition(":")
    return ToolCallArgsDelta(tool_call_id=rest[: int(size)], delta=rest[int(size) :])


@dataclass
class RunLog:
    """A run's events; the first has id ``base + 1`` (``base`` is above 0 in a log reopened
    after a restart, so that the run's ids go on from where they were). ``moved`` is set when the
    run goes on in another process (the Redis hub's copy of a run it stopped driving): its
    readers then end where it stopped, to read the rest from the shared log.

    A ``held`` log shows its readers only the events :meth:`release` has let through: the Redis
    hub releases an event once Redis has it, so that no client ever holds an id that a restarted
    server could give to another event."""

    events: list[_Kept] = field(default_factory=list)
    waiters: list[asyncio.Future[None]] = field(default_factory=list)
    finished_at: float | None = None
    base: int = 0
    moved: bool = False
    held: bool = False
    released: int = 0  # of a held log: how many of its events its readers may see

    def append(self, event: EngineEvent) -> int:
        """Add an event and wake the readers (of a log not held); returns its id."""
        self.events.append(_keep(event))
        if is_terminal(event):
            self.finished_at = time.monotonic()
        if not self.held:
            self.wake()
        return self.base + len(self.events)

    def release(self, upto: int) -> None:
        """Let the readers of a held log see the events up to id ``upto``."""
        self.released = max(self.released, min(upto - self.base, len(self.events)))
        self.wake()

    def _visible(self) -> int:
        return self.released if self.held else len(self.events)

    async def follow(self, after: int) -> AsyncIterator[tuple[int, EngineEvent]]:
        """The events after ``after``, live, until the terminal event (alone when the run ended
        at or before ``after``) or until the log is ``moved``."""
        position = max(0, after - self.base)
        while True:
            visible = self._visible()
            if self.finished_at is not None and position >= visible == len(self.events):
                position = visible - 1  # at or past the end: the terminal event alone
            while position < self._visible():  # what came while the reader was away, too
                event = _event(self.events[position])
                position += 1
                yield self.base + position, event
                if is_terminal(event):
                    return
            if self.moved:
                return
            await self.changed()

    def wake(self) -> None:
        for waiter in self.waiters:
            if not waiter.done():
                waiter.set_result(None)
        self.waiters.clear()

    async def changed(self) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:  # a subscriber that went away leaves nothing behind
            if waiter in self.waiters:
                self.waiters.remove(waiter)
            raise


class MemoryRunHub:
    """Events kept in memory for ``ttl`` seconds after a run finishes."""

    def __init__(self, *, ttl: float = 600.0, instance: str = "local") -> None:
        self.ttl = ttl
        self.instance = instance
        self.confirm_dead_after = 0.0
        self._logs: dict[str, RunLog] = {}
        self._owners: dict[str, ControlHandler] = {}
        self._ended: deque[tuple[float, str]] = deque()  # (finished_at, run id), oldest first

    async def open(self, run_id: str, after: int = 0) -> None:
        self._expire()
        log = self._logs.setdefault(run_id, RunLog(base=max(0, after)))
        log.finished_at = None

    async def publish(self, run_id: str, event: EngineEvent) -> None:
        log = self._logs.setdefault(run_id, RunLog())
        log.append(event)
        if log.finished_at is not None and is_terminal(event):
            self._ended.append((log.finished_at, run_id))

    async def subscribe(
        self, run_id: str, after: int = 0
    ) -> AsyncIterator[tuple[int, EngineEvent]]:
        log = self._logs.get(run_id)
        if log is None:
            return
        async for item in log.follow(after):
            yield item

    async def exists(self, run_id: str) -> bool:
        self._expire()
        return run_id in self._logs

    async def last_id(self, run_id: str) -> int:
        log = self._logs.get(run_id)
        return 0 if log is None else log.base + len(log.events)

    async def is_finished(self, run_id: str) -> bool:
        log = self._logs.get(run_id)
        return log is not None and log.finished_at is not None

    async def send_control(self, run_id: str, message: dict[str, Any]) -> bool:
        handler = self._owners.get(run_id)
        if handler is None:
            return False
        await handler(message)
        return True

    async def own(self, run_id: str, handler: ControlHandler) -> None:
        self._owners[run_id] = handler

    async def disown(self, run_id: str) -> None:
        self._owners.pop(run_id, None)

    async def start(self) -> None:
        return None

    async def alive(self, instance: str) -> bool:
        """One process: every run in the database that is not ours belongs to a dead one."""
        return instance == self.instance

    async def aclose(self) -> None:
        for log in self._logs.values():
            log.wake()
        self._owners.clear()

    def _expire(self) -> None:
        """Forget runs that ended more than ``ttl`` ago, oldest first: each run is looked at
        once, not every run at every start."""
        cutoff = time.monotonic() - self.ttl
        while self._ended and self._ended[0][0] < cutoff:
            finished_at, run_id = self._ended.popleft()
            log = self._logs.get(run_id)
            if log is not None and log.finished_at == finished_at:  # not reopened since
                del self._logs[run_id]
