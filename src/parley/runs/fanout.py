"""Which runs each user has: the progress socket's index of the runs to follow.

A fan-out is one of ``RunManager.listeners``. When a run starts it announces the run (its id and
conversation) to the user who asked for it; a socket follows the announcements of its user and
reads each run's events from the run hub, so every progress message carries the run's own event
id and a reconnecting socket replays from the run log. Each user's last ``recent`` runs are kept,
for that replay. Built once with the app (:func:`build_fanout`):

- :class:`MemoryFanout`, without Redis: announcements stay in this process, as the runs do;
- :class:`RedisFanout`, with Redis: announcements go to the stream ``parley:user:{id}:runs``
  (capped at ``recent`` entries, expiring ``ttl`` seconds after the last), so a socket on any
  process follows the runs of every process.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Iterable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from parley.chat.events import EngineEvent, RunStarted
from parley.engine.requests import PreparedTurn
from parley.runs.base import RunListener

log = structlog.get_logger("parley.runs.fanout")
RECENT = 100


@dataclass(frozen=True)
class RunRef:
    """A run of a user, as announced when it started."""

    run_id: str
    conversation_id: str


class UserFanout(RunListener, Protocol):
    def follow(
        self, user_id: str, since: str | None = None
    ) -> AbstractAsyncContextManager[AsyncIterator[RunRef]]:
        """The user's runs from the moment the context is entered; first, when ``since`` is
        given, the recent runs started after that one (all recent runs when it is not among
        them: it is older, or unknown)."""

    async def aclose(self) -> None:
        """Finish announcing and release connections."""


def after(refs: Iterable[RunRef], since: str | None) -> list[RunRef]:
    """The runs of ``refs`` (oldest first) started after ``since``; see ``follow``."""
    refs = list(refs)
    if since is None:
        return []
    ids = [ref.run_id for ref in refs]
    return refs[ids.index(since) + 1 :] if since in ids else refs


class MemoryFanout:
    """Announcements to the sockets of this process; bounded queues, a slow socket loses runs
    rather than holding memory."""

    def __init__(self, *, recent: int = RECENT, maxsize: int = 1_000) -> None:
        self.maxsize = maxsize
        self._recent: dict[str, deque[RunRef]] = {}
        self._queues: dict[str, set[asyncio.Queue[RunRef]]] = {}
        self._size = recent

    def __call__(self, turn: PreparedTurn, event: EngineEvent) -> None:
        if isinstance(event, RunStarted):
            ref = RunRef(turn.run_id, turn.conversation_id)
            self._recent.setdefault(turn.acting_user, deque(maxlen=self._size)).append(ref)
            for queue in self._queues.get(turn.acting_user, ()):
                with contextlib.suppress(asyncio.QueueFull):
                    queue.put_nowait(ref)

    @contextlib.asynccontextmanager
    async def follow(
        self, user_id: str, since: str | None = None
    ) -> AsyncIterator[AsyncIterator[RunRef]]:
        queue: asyncio.Queue[RunRef] = asyncio.Queue(self.maxsize)
        self._queues.setdefault(user_id, set()).add(queue)
        try:
            yield _drain(after(self._recent.get(user_id, ()), since), queue)
        finally:
            queues = self._queues[user_id]
            queues.discard(queue)
            if not queues:
                del self._queues[user_id]

    async def aclose(self) -> None:
        return None


async def _drain(backlog: list[RunRef], queue: asyncio.Queue[RunRef]) -> AsyncIterator[RunRef]:
    for ref in backlog:
        yield ref
    while True:
        yield await queue.get()


def _key(user_id: str) -> str:
    return f"parley:user:{user_id}:runs"


def _ref(fields: dict[bytes, bytes]) -> RunRef:
    return RunRef(fields[b"r"].decode(), fields[b"c"].decode())


class RedisFanout:
    """Announcements through a per-user Redis stream: written by the process that runs the run,
    read by the sockets of every process."""

    def __init__(
        self, url: str, *, ttl: float = 600.0, recent: int = RECENT, block_ms: int = 5_000
    ) -> None:
        import redis.asyncio as aioredis

        self.redis: aioredis.Redis = aioredis.from_url(url, socket_connect_timeout=5)
        self.ttl = max(1, int(ttl))
        self.recent = recent
        self.block_ms = block_ms
        self._writes: set[asyncio.Task[None]] = set()

    def __call__(self, turn: PreparedTurn, event: EngineEvent) -> None:
        if isinstance(event, RunStarted):
            ref = RunRef(turn.run_id, turn.conversation_id)
            task = asyncio.create_task(self._announce(turn.acting_user, ref))
            self._writes.add(task)
            task.add_done_callback(self._writes.discard)

    async def _announce(self, user_id: str, ref: RunRef) -> None:
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.xadd(
                    _key(user_id),
                    {"r": ref.run_id, "c": ref.conversation_id},
                    maxlen=self.recent,
                    approximate=True,
                )
                pipe.expire(_key(user_id), self.ttl)
                await pipe.execute()
        except Exception:
            log.exception("fanout_announce_failed", run_id=ref.run_id)

    @contextlib.asynccontextmanager
    async def follow(
        self, user_id: str, since: str | None = None
    ) -> AsyncIterator[AsyncIterator[RunRef]]:
        entries: Any = await self.redis.xrange(_key(user_id))
        last = entries[-1][0] if entries else b"0-0"
        backlog = after((_ref(fields) for _, fields in entries), since)
        yield self._tail(user_id, backlog, last)

    async def _tail(
        self, user_id: str, backlog: list[RunRef], last: bytes
    ) -> AsyncIterator[RunRef]:
        for ref in backlog:
            yield ref
        while True:
            batch: Any = await self.redis.xread({_key(user_id): last}, block=self.block_ms)
            for _, entries in batch or ():
                for entry_id, fields in entries:
                    last = entry_id  # the next read starts after it
                    yield _ref(fields)

    async def aclose(self) -> None:
        await asyncio.gather(*self._writes, return_exceptions=True)
        await self.redis.aclose()


def build_fanout(redis_url: str | None, *, ttl: float) -> UserFanout:
    """A Redis fan-out when the run hub is on Redis (runs of any process), else in memory."""
    if redis_url:
        return RedisFanout(redis_url, ttl=ttl)
    return MemoryFanout()
