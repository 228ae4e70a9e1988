"""Per-user fan-out of the events of runs driven in this process (the progress socket's feed).

A :class:`UserFanout` is one of ``RunManager.listeners``: the manager calls it with every event it
publishes, whichever door started the run. Each subscriber gets a bounded queue; a subscriber
that falls behind loses events rather than holding memory.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

from parley.chat.events import EngineEvent

if TYPE_CHECKING:
    from parley.engine.runner import RunManager
    from parley.engine.turn import PreparedTurn

Item = tuple[str, str, EngineEvent]  # run id, conversation id, event


class UserFanout:
    def __init__(self, *, maxsize: int = 1_000) -> None:
        self.maxsize = maxsize
        self._queues: dict[str, set[asyncio.Queue[Item]]] = {}

    @classmethod
    def of(cls, runs: RunManager) -> UserFanout:
        """The fan-out listening to ``runs``, added on first use."""
        for listener in runs.listeners:
            if isinstance(listener, cls):
                return listener
        fanout = cls()
        runs.listeners.append(fanout)
        return fanout

    def __call__(self, turn: PreparedTurn, event: EngineEvent) -> None:
        for queue in self._queues.get(turn.user_id, ()):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait((turn.run_id, turn.conversation_id, event))

    def subscribe(self, user_id: str) -> asyncio.Queue[Item]:
        queue: asyncio.Queue[Item] = asyncio.Queue(self.maxsize)
        self._queues.setdefault(user_id, set()).add(queue)
        return queue

    def unsubscribe(self, user_id: str, queue: asyncio.Queue[Any]) -> None:
        queues = self._queues.get(user_id)
        if queues is not None:
            queues.discard(queue)
            if not queues:
                del self._queues[user_id]
