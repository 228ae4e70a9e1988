"""The run hub seam. The engine publishes; doors subscribe; control messages reach the owner.

A run's events get increasing integer ids (1, 2, …), and a run's ids never go back: a log the hub
lost (a restart of the in-process hub) is reopened after the run's last stored id.
``subscribe(run_id, after=n)`` yields every event with an id above ``n`` and ends after the run's
terminal event; a client at or past the end of a finished run (a reconnecting ``EventSource``) gets
the terminal event alone, at once. Control messages (cancel, approval and elicitation answers) are
delivered to the process that owns the run.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

from parley.chat import events as ev
from parley.chat.events import EngineEvent
from parley.engine.requests import PreparedTurn, TurnRequest
from parley.store.values import Caller, Run

ControlHandler = Callable[[dict[str, Any]], Awaitable[None]]


class TurnEngine(Protocol):
    """What the run manager asks of the engine (:class:`parley.engine.turn.Engine`)."""

    async def prepare(
        self,
        caller: Caller,
        conversation_id: str,
        request: TurnRequest,
        *,
        owner: str | None = None,
    ) -> PreparedTurn:
        """Check the request and the caller's reach, and commit its turn (errors raise here)."""

    async def reopen(self, user_id: str, run: Run) -> PreparedTurn:
        """The turn of a suspended run, from its stored state."""

    def run(self, turn: PreparedTurn, *, resume: bool = False) -> AsyncIterator[ev.EngineEvent]:
        """The turn's events, ending with a terminal one, or silently when it suspends."""

    def answer_elicitation(self, elicitation_id: str, answer: dict[str, object]) -> bool:
        """Hand an answer to the tool waiting for it in this process."""

    def server_of(self, tool_name: str) -> str | None:
        """The MCP server of a registered tool, if any."""


class RunListener(Protocol):
    """Told of every event the run manager publishes, in the process driving the run, after the
    hub has it. Called inline on the run's task: it must not block and must not raise."""

    def __call__(self, turn: PreparedTurn, event: EngineEvent) -> None: ...


class RunHub(Protocol):
    confirm_dead_after: float
    """How long a run's owner must stay dead before its runs are failed: 0 where ``alive`` is
    certain (one process), a heartbeat's time where a lost connection can only look like death."""

    async def open(self, run_id: str, after: int = 0) -> None:
        """Prepare a run's event log (idempotent: a resumed run keeps its log); a log the hub
        does not hold numbers its events after ``after``."""

    async def publish(self, run_id: str, event: EngineEvent) -> None:
        """Append an event; the hub gives it the next id. Subscribers see events in order."""

    def subscribe(self, run_id: str, after: int = 0) -> AsyncIterator[tuple[int, EngineEvent]]:
        """Events after ``after``, live, ending after the terminal event (alone when the run
        ended at or before ``after``)."""

    async def exists(self, run_id: str) -> bool:
        """Whether the hub still holds this run's log (opened, or with events)."""

    async def last_id(self, run_id: str) -> int:
        """The id of the run's newest event (0 when the hub holds none)."""

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
