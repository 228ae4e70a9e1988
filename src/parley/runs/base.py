"""The run hub seam. The engine publishes; doors subscribe; control messages reach the owner.

A run's events get increasing integer ids (1, 2, …). ``subscribe(run_id, after=n)`` yields every
event with an id above ``n`` and ends after the run's terminal event. Control messages (cancel,
approval and elicitation answers) are delivered to the process that owns the run.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

from parley.chat.events import EngineEvent

ControlHandler = Callable[[dict[str, Any]], Awaitable[None]]


class RunHub(Protocol):
    async def open(self, run_id: str) -> None:
        """Prepare a run's event log (idempotent: a resumed run keeps its log)."""

    async def publish(self, run_id: str, event: EngineEvent) -> None:
        """Append an event; the hub gives it the next id. Subscribers see events in order."""

    def subscribe(self, run_id: str, after: int = 0) -> AsyncIterator[tuple[int, EngineEvent]]:
        """Events after ``after``, live, ending after the terminal event."""

    async def exists(self, run_id: str) -> bool:
        """Whether the hub still holds this run's events."""

    async def is_finished(self, run_id: str) -> bool:
        """Whether the run's terminal event has been published."""

    async def send_control(self, run_id: str, message: dict[str, Any]) -> bool:
        """Deliver a control message to the run's owner; False when no process owns it."""

    async def own(self, run_id: str, handler: ControlHandler) -> None:
        """This process runs ``run_id``: route its control messages to ``handler``."""

    async def disown(self, run_id: str) -> None:
        """This process no longer runs ``run_id`` (finished or suspended)."""

    async def start(self) -> None:
        """Begin background work (control listener, heartbeats)."""

    async def alive(self, instance: str) -> bool:
        """Whether the process ``instance`` is still running (for failover)."""

    async def aclose(self) -> None:
        """Stop background work and release connections."""
