"""The in-process run hub: the default when no Redis is configured."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from parley.chat.events import EngineEvent, is_terminal
from parley.runs.base import ControlHandler


@dataclass
class _Log:
    events: list[EngineEvent] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    finished_at: float | None = None


class MemoryRunHub:
    """Events kept in memory for ``ttl`` seconds after a run finishes."""

    def __init__(self, *, ttl: float = 600.0, instance: str = "local") -> None:
        self.ttl = ttl
        self.instance = instance
        self._logs: dict[str, _Log] = {}
        self._owners: dict[str, ControlHandler] = {}

    async def open(self, run_id: str) -> None:
        self._expire()
        log = self._logs.setdefault(run_id, _Log())
        log.finished_at = None

    async def publish(self, run_id: str, event: EngineEvent) -> None:
        log = self._logs.setdefault(run_id, _Log())
        log.events.append(event)
        if is_terminal(event):
            log.finished_at = time.monotonic()
        log.changed.set()
        log.changed = asyncio.Event()

    async def subscribe(
        self, run_id: str, after: int = 0
    ) -> AsyncIterator[tuple[int, EngineEvent]]:
        log = self._logs.get(run_id)
        if log is None:
            return
        position = max(0, after)
        while True:
            while position < len(log.events):
                event = log.events[position]
                position += 1
                yield position, event
                if is_terminal(event):
                    return
            await log.changed.wait()

    async def exists(self, run_id: str) -> bool:
        self._expire()
        return run_id in self._logs

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
            log.changed.set()
        self._owners.clear()

    def _expire(self) -> None:
        cutoff = time.monotonic() - self.ttl
        for run_id in [
            r for r, log in self._logs.items() if log.finished_at and log.finished_at < cutoff
        ]:
            del self._logs[run_id]
