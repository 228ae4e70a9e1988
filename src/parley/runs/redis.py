"""The Redis run hub: any process can serve any run.

- A run's events live in the stream ``parley:run:{id}:events`` with ids ``0-1``, ``0-2``, … (the
  event's sequence number is the id's second half), replayed with XRANGE and followed with XREAD.
- The terminal event sets ``parley:run:{id}:done``; the stream and that key expire ``ttl`` seconds
  later. A reader at or past the end of a finished run gets the terminal event alone, at once.
- The owner of a running run holds ``parley:run:{id}:owner`` (its instance id), refreshed by a
  heartbeat; control messages (cancel, elicitation answers) are published on the owner's channel
  ``parley:ctl:{instance}``. A run whose owner key has expired has lost its process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
import structlog

from parley.chat.events import EngineEvent, dump_event, is_terminal, load_event
from parley.runs.base import ControlHandler

log = structlog.get_logger("parley.runs.redis")
PREFIX = "parley"


def _key(run_id: str, part: str) -> str:
    return f"{PREFIX}:run:{run_id}:{part}"


def _seq(stream_id: bytes | str) -> int:
    text = stream_id.decode() if isinstance(stream_id, bytes) else stream_id
    return int(text.split("-", 1)[1])


@dataclass
class _Outbox:
    """A run's events on their way to its stream."""

    queued: list[str] = field(default_factory=list)
    writer: asyncio.Task[None] | None = None
    failure: Exception | None = None


def connect(url: str) -> aioredis.Redis:
    """The client of ``PARLEY_REDIS_URL``: the run hub's, shared with the limiter."""
    return aioredis.from_url(
        url, max_connections=2_000, socket_timeout=30, socket_connect_timeout=5
    )


class RedisRunHub:
    """The run hub on Redis Streams; it closes ``redis`` in :meth:`aclose`."""

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        instance: str,
        ttl: float = 600.0,
        owner_ttl: float = 10.0,
        block_ms: int = 5_000,
    ) -> None:
        self.redis = redis
        self.instance = instance
        self.ttl = int(ttl)
        self.owner_ttl = owner_ttl
        self.block_ms = block_ms
        self._handlers: dict[str, ControlHandler] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._outboxes: dict[str, _Outbox] = {}

    async def start(self) -> None:
        """Listen for this instance's control messages and keep its owner keys alive."""
        await self.redis.ping()
        await self._beat()
        ready = asyncio.Event()
        self._tasks.append(asyncio.create_task(self._listen(ready), name="parley control"))
        self._tasks.append(asyncio.create_task(self._heartbeat(), name="parley heartbeat"))
        await ready.wait()

    # events -------------------------------------------------------------------------------

    async def open(self, run_id: str, after: int = 0) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(_key(run_id, "done"))
            pipe.set(_key(run_id, "live"), self.instance, ex=self.ttl + 3600)
            await pipe.execute()
        if after > 0 and not await self.redis.exists(_key(run_id, "events")):
            await self._number_after(_key(run_id, "events"), after)

    async def _number_after(self, stream: str, after: int) -> None:
        """Make an empty stream whose next id is ``0-{after + 1}`` (a stream keeps its last id)."""
        with contextlib.suppress(aioredis.ResponseError):  # written meanwhile: it has its ids
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.xadd(stream, {"e": ""}, id=f"0-{after}")
                pipe.xdel(stream, f"0-{after}")
                await pipe.execute()

    async def publish(self, run_id: str, event: EngineEvent) -> None:
        """Queue the event for the run's stream; a terminal event returns once all are written.

        One writer task per run sends whatever was queued meanwhile in one pipeline, in order:
        a fast model's burst of tokens costs one round trip to Redis, not one per token.
        """
        outbox = self._outboxes.get(run_id)
        if outbox is None:
            outbox = self._outboxes[run_id] = _Outbox()
        outbox.queued.append(dump_event(event))
        if outbox.writer is None or outbox.writer.done():
            outbox.writer = asyncio.create_task(self._write(run_id, outbox))
        if is_terminal(event):
            await self._drain(run_id, outbox)
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.set(_key(run_id, "done"), "1", ex=self.ttl)
                pipe.expire(_key(run_id, "events"), self.ttl)
                pipe.expire(_key(run_id, "live"), self.ttl)
                await pipe.execute()

    async def _write(self, run_id: str, outbox: _Outbox) -> None:
        stream = _key(run_id, "events")
        while outbox.queued:
            batch, outbox.queued = outbox.queued, []
            try:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for data in batch:
                        pipe.xadd(stream, {"e": data}, id="0-*")
                    await pipe.execute()
            except Exception as exc:
                log.exception("redis_publish_failed", run_id=run_id, events=len(batch))
                outbox.failure = exc  # the run's terminal publish raises it
                return
        if self._outboxes.get(run_id) is outbox:
            del self._outboxes[run_id]  # a suspended run may go on in another process

    async def _drain(self, run_id: str, outbox: _Outbox) -> None:
        """Wait until every queued event of the run is in Redis; then forget the outbox."""
        while outbox.writer is not None and not outbox.writer.done():
            await asyncio.shield(outbox.writer)
        self._outboxes.pop(run_id, None)
        if outbox.failure is not None:
            raise outbox.failure

    async def subscribe(
        self, run_id: str, after: int = 0
    ) -> AsyncIterator[tuple[int, EngineEvent]]:
        """Replay with XREAD, then follow it blocking. A read that finds nothing asks whether the
        run is over: ended (its events all written before ``done`` is set), or forgotten."""
        stream = _key(run_id, "events")
        last = f"0-{max(0, after)}"
        block = self.block_ms if after <= 0 else None  # a resume's first read answers at once
        while True:
            batch = await self._read(run_id, stream, last, block)
            block = self.block_ms
            if not batch:
                state = await self._state(run_id)
                if state == "live":
                    continue
                batch = await self._read(run_id, stream, last, None) if state == "done" else []
                if not batch:  # at or past the end: the terminal event alone
                    async for item in self._terminal(stream):
                        yield item
                    return
            for stream_id, fields in batch[0][1]:
                last = stream_id.decode() if isinstance(stream_id, bytes) else stream_id
                event = load_event(fields[b"e"])
                yield _seq(stream_id), event
                if is_terminal(event):
                    return

    async def _read(self, run_id: str, stream: str, last: str, block: int | None) -> Any:
        while True:
            try:
                return await self.redis.xread({stream: last}, count=500, block=block)
            except (aioredis.TimeoutError, aioredis.ConnectionError):
                log.warning("redis_read_retry", run_id=run_id)
                await asyncio.sleep(0.1)

    async def _state(self, run_id: str) -> str:
        """``done`` (the terminal event is written), ``live``, or ``gone`` (expired)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.exists(_key(run_id, "done"))
            pipe.exists(_key(run_id, "events"), _key(run_id, "live"))
            done, held = await pipe.execute()
        return "done" if done else "live" if held else "gone"

    async def _terminal(self, stream: str) -> AsyncIterator[tuple[int, EngineEvent]]:
        newest: Any = await self.redis.xrevrange(stream, "+", "-", count=1)
        for stream_id, fields in newest:
            event = load_event(fields[b"e"])
            if is_terminal(event):
                yield _seq(stream_id), event

    async def exists(self, run_id: str) -> bool:
        return bool(await self.redis.exists(_key(run_id, "events"), _key(run_id, "live")))

    async def last_id(self, run_id: str) -> int:
        outbox = self._outboxes.get(run_id)
        while outbox is not None and outbox.writer is not None and not outbox.writer.done():
            await asyncio.shield(outbox.writer)
        try:
            info: Any = await self.redis.xinfo_stream(_key(run_id, "events"))
        except aioredis.ResponseError:  # no such stream
            return 0
        return _seq(info["last-generated-id"])

    async def is_finished(self, run_id: str) -> bool:
        return bool(await self.redis.exists(_key(run_id, "done")))

    # ownership and control -------------------------------------------------------------------

    async def own(self, run_id: str, handler: ControlHandler) -> None:
        self._handlers[run_id] = handler
        await self.redis.set(_key(run_id, "owner"), self.instance, px=int(self.owner_ttl * 1000))

    async def disown(self, run_id: str) -> None:
        self._handlers.pop(run_id, None)
        key = _key(run_id, "owner")
        if await self.redis.get(key) == self.instance.encode():
            await self.redis.delete(key)

    async def owner(self, run_id: str) -> str | None:
        value: Any = await self.redis.get(_key(run_id, "owner"))
        return value.decode() if value else None

    async def send_control(self, run_id: str, message: dict[str, Any]) -> bool:
        owner = await self.owner(run_id)
        if owner is None:
            return False
        if owner == self.instance:
            handler = self._handlers.get(run_id)
            if handler is None:
                return False
            await handler(message)
            return True
        payload = json.dumps({"run_id": run_id, "message": message})
        receivers = await self.redis.publish(f"{PREFIX}:ctl:{owner}", payload)
        return bool(receivers)

    async def _listen(self, ready: asyncio.Event) -> None:
        pubsub = self.redis.pubsub()
        await pubsub.subscribe(f"{PREFIX}:ctl:{self.instance}")
        ready.set()
        try:
            async for item in pubsub.listen():
                if item.get("type") != "message":
                    continue
                await self._dispatch(item["data"])
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call,unused-ignore]  # typed from redis 8

    async def _dispatch(self, raw: bytes) -> None:
        try:
            envelope = json.loads(raw)
            handler = self._handlers.get(envelope["run_id"])
            if handler is not None:
                await handler(envelope["message"])
        except Exception:
            log.exception("control_message_failed")

    async def alive(self, instance: str) -> bool:
        """Whether the process ``instance`` has sent a heartbeat within ``owner_ttl``."""
        return bool(await self.redis.exists(f"{PREFIX}:instance:{instance}"))

    async def _beat(self) -> None:
        await self.redis.set(
            f"{PREFIX}:instance:{self.instance}", "1", px=int(self.owner_ttl * 1000)
        )

    async def _heartbeat(self) -> None:
        interval = self.owner_ttl / 3
        while True:
            try:
                await self._beat()
            except Exception:
                log.exception("heartbeat_failed")
            await asyncio.sleep(interval)
            try:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for run_id in list(self._handlers):
                        pipe.set(
                            _key(run_id, "owner"), self.instance, px=int(self.owner_ttl * 1000)
                        )
                    await pipe.execute()
            except Exception:
                log.exception("heartbeat_failed")

    async def aclose(self) -> None:
        writers = [o.writer for o in self._outboxes.values() if o.writer is not None]
        await asyncio.gather(*writers, return_exceptions=True)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        for run_id in list(self._handlers):
            with contextlib.suppress(Exception):
                await self.disown(run_id)
        with contextlib.suppress(Exception):
            await self.redis.delete(f"{PREFIX}:instance:{self.instance}")
        await self.redis.aclose()
