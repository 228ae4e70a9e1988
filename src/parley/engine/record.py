"""Where the engine keeps a turn's reply: :class:`TurnRecord` is the hook, :class:`StoredTurns`
the store's implementation (a subagent's keeps nothing: ``parley.engine.subagents``).

A streaming reply is checkpointed now and then, never per token and never waited for; a run
that waits for approvals stores its reply, usage and state; a finished run stores its reply
with its status. The final write waits for a checkpoint under way, so none lands after it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol

from parley.chat.messages import Part, PartsBuilder
from parley.chat.usage import TokenUsage
from parley.engine.requests import PreparedTurn
from parley.errors import ErrorInfo
from parley.store import Store
from parley.store.checkpoints import CheckpointWriter
from parley.store.values import RunState

Checkpoint = Callable[[PartsBuilder], None]


class TurnRecord(Protocol):
    """What :class:`~parley.engine.turn.Engine` does with a turn's reply, and with a cancel.

    ``ends_cancelled``: True, a cancelled run is finished (its reply kept as ``cancelled``) and
    ends with a terminal event; False, the cancellation goes on to whoever drives the run.
    """

    ends_cancelled: bool

    def begin(self, turn: PreparedTurn) -> Checkpoint:
        """Start keeping ``turn``'s reply: the engine calls the result after every event."""

    async def suspend(self, turn: PreparedTurn, parts: list[Part]) -> None:
        """The run waits for approvals: keep its reply, state and usage so far."""

    async def finish(
        self, turn: PreparedTurn, parts: list[Part], status: str, error: ErrorInfo | None
    ) -> None:
        """The run ended with ``status`` (``complete``, ``error``, ``cancelled``, …)."""


class StoredTurns:
    """The store keeps every reply: checkpoints while it streams, then its end."""

    ends_cancelled = True

    def __init__(self, store: Store, interval: float) -> None:
        self.store = store
        self.checkpoints = CheckpointWriter(store)
        self.interval = interval

    def begin(self, turn: PreparedTurn) -> Checkpoint:
        return _Checkpointer(self.checkpoints, turn, self.interval).maybe

    async def suspend(self, turn: PreparedTurn, parts: list[Part]) -> None:
        """Store the reply as ``awaiting`` with its usage so far: the resumed run counts anew."""
        await self.checkpoints.settle(turn.message_id)
        await self.store.finish_turn(
            turn.user_id,
            run_id=turn.run_id,
            message_id=turn.message_id,
            conversation_id=turn.conversation_id,
            status="awaiting",
            parts=parts,
            usage=turn.usage,
            cost=turn.cost,
            run_status="awaiting",
            run_state=_state_of(turn),
        )
        turn.usage = TokenUsage()
        turn.cost = 0.0

    async def finish(
        self, turn: PreparedTurn, parts: list[Part], status: str, error: ErrorInfo | None
    ) -> None:
        await self.checkpoints.settle(turn.message_id)
        await asyncio.shield(
            self.store.finish_turn(
                turn.user_id,
                run_id=turn.run_id,
                message_id=turn.message_id,
                conversation_id=turn.conversation_id,
                status=status,
                parts=parts,
                usage=turn.usage,
                cost=turn.cost,
                error=error,
            )
        )


def _state_of(turn: PreparedTurn) -> RunState:
    return RunState(
        step=turn.step,
        max_steps=turn.max_steps,
        model=turn.model.ref,
        temperature=turn.temperature,
        max_tokens=turn.max_tokens,
        system=turn.system,
        tools=turn.tools.state(),
        actor=turn.actor,
    )


class _Checkpointer:
    """Hands the streaming reply to the :class:`CheckpointWriter` at most once per
    ``interval`` seconds, without waiting: the writer saves every reply's checkpoint in one
    transaction, and a run that waited for its own write would hold its events back."""

    def __init__(self, writer: CheckpointWriter, turn: PreparedTurn, interval: float) -> None:
        self.writer = writer
        # the reply's ids, not the turn: a cycle through the turn would leave every finished
        # turn for a full garbage collection to free
        self.user_id = turn.user_id
        self.message_id = turn.message_id
        self.interval = interval
        self.last = time.monotonic()

    def maybe(self, builder: PartsBuilder) -> None:
        now = time.monotonic()
        if now - self.last < self.interval:
            return
        self.last = now
        snapshot = [part.copy() for part in builder.parts]  # the builder goes on changing them
        self.writer.submit(self.user_id, self.message_id, snapshot)
