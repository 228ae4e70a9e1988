"""The Redis run hub: any process can serve any run.

- A run's events live in the stream ``parley:run:{id}:events`` with ids ``0-1``, ``0-2``, … (the
  event's sequence number is the id's second half), replayed with XRANGE and followed with XREAD.
- The terminal event sets ``parley:run:{id}:done`` (in the write that carries it); the stream and
  that key expire ``ttl`` seconds later. A reader at or past the end of a finished run gets the
  terminal event alone, at once.
- The process driving a run keeps its events in memory as well (a :class:`RunLog`): its own
  subscribers read them there, as from the in-process hub, and only other processes' subscribers
  (and late ones, once the run has ended or left) read Redis. They read an event only once Redis
  has it: a client never holds an id that Redis lacks, which a server restarted after a crash
  would otherwise give to another event of the run. One writer task sends what every run
  published since the last write, in one pipeline: each run's batch is one stream entry, whose
  id is that of its last event (its events are the lines of its field ``e``, ids counting up to
  the entry's). A fast run's burst of tokens, or one token of each of hundreds of paced runs,
  costs one round trip, not one per token or per run. A batch cut off by a lost connection is
  sent again once Redis answers; readers skip the ids they have had, so nothing is missed or
  doubled.
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
from parley.runs.memory import RunLog

log = structlog.get_logger("parley.runs.redis")
PREFIX = "parley"


def _key(run_id: str, part: str) -> str:
    return f"{PREFIX}:run:{run_id}:{part}"


def _seq(stream_id: bytes | str) -> int:
    text = stream_id.decode() if isinstance(stream_id, bytes) else stream_id
    return int(text.split("-", 1)[1])


def _entry(stream_id: bytes, fields: dict[bytes, bytes]) -> list[tuple[int, EngineEvent]]:
    """The events of a stream entry with their ids (the entry's id is its last event's)."""
    lines = fields[b"e"].split(b"\n")
    first = _seq(stream_id) - len(lines) + 1
    return [(first + n, load_event(line)) for n, line in enumerate(lines)]


@dataclass
class _Local:
    """A run this process drives: its events in memory, and those on their way to its stream."""

    run_id: str
    log: RunLog
    queued: list[str] = field(default_factory=list)  # events after ``written``, as JSON
    written: int = 0  # the id of the newest event Redis has
    failure: Exception | None = None
    ended: bool = False  # its end is written: marked done, and no longer owned


def _ends(local: _Local, count: int) -> bool:
    """Whether the first ``count`` events the run queued end it."""
    return local.log.finished_at is not None and count == len(local.queued)


def connect(url: str) -> aioredis.Redis:
    """The client of ``PARLEY_REDIS_URL``: the run hub's, shared with the limiter."""
    return aioredis.from_url(
        url, max_connections=2_000, socket_timeout=30, socket_connect_timeout=5
    )


_RETRYABLE = (aioredis.ConnectionError, aioredis.TimeoutError, OSError)


def _cancel_kept() -> None:
    """Raise the cancellation a redis-py call swallowed: a task cancelled while a command's
    read timeout is active can get the reply instead of its ``CancelledError`` (seen with
    redis 8.2 on Python 3.11 in about half of the cancels; redis/redis-py#2028, #2551), and a
    reader whose client went away would otherwise follow the run to its end."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


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
        write_retry: float = 30.0,
        flush_interval: float = 0.005,
    ) -> None:
        self.redis = redis
        self.instance = instance
        self.ttl = int(ttl)
        self.owner_ttl = owner_ttl
        # After an outage of Redis every owner looks dead until its next heartbeat: a sweep
        # fails a run only if its owner is still dead one owner TTL after it was first seen so.
        self.confirm_dead_after = owner_ttl
        self.block_ms = block_ms
        self._handlers: dict[str, ControlHandler] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.write_retry = write_retry  # how long writes wait for Redis to come back
        self.flush_interval = flush_interval  # between writes (what comes meanwhile is batched)
        self._local: dict[str, _Local] = {}
        self._queued: dict[str, _Local] = {}  # the runs with events for the next write
        self._writer: asyncio.Task[None] | None = None
        self._written: list[asyncio.Future[None]] = []  # woken after each write
        self._hurry = False  # a terminal event is queued: the next write does not wait

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
        async with self.redis.pipeline(transaction=False) as pipe:
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
        """Append the event to the run's log in memory (when this process drives the run) and
        queue it for the writer; a terminal event returns once all are written."""
        local = self._local.get(run_id)
        if local is None:  # not driven here (a sweep, a suspended run's cancel): to Redis alone
            await self._publish_alone(run_id, event)
            return
        local.log.append(event)
        local.queued.append(dump_event(event))
        self._queued[run_id] = local
        self._start_writer()
        if is_terminal(event):
            self._hurry = True
            try:
                await self._drain(local)  # and marked done, in the same write
            except BaseException:  # what follows goes to Redis alone, as for a run not here
                if self._local.get(run_id) is local:
                    del self._local[run_id]
                raise

    async def _publish_alone(self, run_id: str, event: EngineEvent) -> None:
        await self.redis.xadd(_key(run_id, "events"), {"e": dump_event(event)}, id="0-*")
        if is_terminal(event):
            await self._mark_done(run_id)

    async def _mark_done(self, run_id: str) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            self._done_in(pipe, run_id)
            await pipe.execute()

    def _done_in(self, pipe: Any, run_id: str) -> None:
        """The commands that end a run, after its last event: it is ``done``, its keys expire,
        and it has no owner (a heartbeat that was on its way may set that again, for one owner
        TTL; nothing asks the owner of an ended run)."""
        pipe.set(_key(run_id, "done"), "1", ex=self.ttl)
        pipe.expire(_key(run_id, "events"), self.ttl)
        pipe.expire(_key(run_id, "live"), self.ttl)
        pipe.delete(_key(run_id, "owner"))

    async def _write(self) -> None:
        """Send the queued events of every run, one entry per run, in one pipeline; then wait
        ``flush_interval`` (unless a run is ending) so that the next write carries what came
        meanwhile. A lost connection sends the batches again (each with its id, so an entry
        Redis already has is refused, not doubled) until Redis answers or ``write_retry``
        seconds pass without it."""
        waited, pause = 0.0, 0.05
        while self._queued:
            batches = [(local, len(local.queued)) for local in self._queued.values()]
            self._queued, self._hurry = {}, False
            try:
                self._written_in(batches, await self._send(batches))
                waited, pause = 0.0, 0.05
            except _RETRYABLE as exc:
                if waited < self.write_retry:
                    log.warning("redis_publish_retry", runs=len(batches))
                    self._queued = {local.run_id: local for local, _ in batches} | self._queued
                    await asyncio.sleep(pause)
                    waited, pause = waited + pause, min(1.0, pause * 2)
                    continue
                self._give_up(batches, exc)
                waited, pause = 0.0, 0.05
            except asyncio.CancelledError:  # the next writer sends them
                self._queued = {local.run_id: local for local, _ in batches} | self._queued
                raise
            except Exception as exc:  # a bug: the runs fail rather than wait for ever
                log.exception("redis_writer_failed")
                self._give_up(batches, exc)
            finally:
                self._wake_drains()
            if self._queued and not self._hurry:
                await asyncio.sleep(self.flush_interval)

    async def _send(self, batches: list[tuple[_Local, int]]) -> list[Any]:
        """The reply to each batch's XADD; a batch that ends its run also marks it done."""
        places = []
        async with self.redis.pipeline(transaction=False) as pipe:
            for local, count in batches:
                places.append(len(pipe))
                pipe.xadd(
                    _key(local.run_id, "events"),
                    {"e": "\n".join(local.queued[:count])},
                    id=f"0-{local.written + count}",
                )
                if _ends(local, count):
                    self._done_in(pipe, local.run_id)
            results: list[Any] = await pipe.execute(raise_on_error=False)
        return [results[place] for place in places]

    def _written_in(self, batches: list[tuple[_Local, int]], results: list[Any]) -> None:
        """Release what Redis has to the runs' readers."""
        for (local, count), result in zip(batches, results, strict=True):
            refused = isinstance(result, aioredis.ResponseError)
            if refused and "equal or smaller" not in str(result):  # else: written before a cut
                log.error("redis_publish_refused", run_id=local.run_id, error=str(result))
                local.failure = result
            local.ended = _ends(local, count)
            del local.queued[:count]
            local.written += count
            local.log.release(local.written)

    def _give_up(self, batches: list[tuple[_Local, int]], exc: Exception) -> None:
        """Redis will not have these events: their runs fail (the terminal publish raises), and
        their readers may see what they have."""
        for local, _ in batches:
            log.error("redis_publish_failed", run_id=local.run_id, events=len(local.queued))
            local.failure = exc
            local.queued = []
            local.log.release(local.log.base + len(local.log.events))

    def _wake_drains(self) -> None:
        for waiter in self._written:
            if not waiter.done():
                waiter.set_result(None)
        self._written.clear()

    def _start_writer(self) -> None:
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write(), name="parley run writer")

    async def _drain(self, local: _Local) -> None:
        """Wait until every queued event of the run is in Redis."""
        while local.queued:
            self._start_writer()  # a no-op but after a writer was cancelled with writes left
            waiter = asyncio.get_running_loop().create_future()
            self._written.append(waiter)
            await waiter
        if local.failure is not None:
            raise local.failure

    async def subscribe(
        self, run_id: str, after: int = 0
    ) -> AsyncIterator[tuple[int, EngineEvent]]:
        """From memory while this process drives the run and holds every event after ``after``;
        from Redis otherwise, and for the rest of a run that went on elsewhere."""
        local = self._local.get(run_id)
        if local is not None and after >= local.log.base:
            async for event_id, event in local.log.follow(after):
                yield event_id, event
                after = event_id
                if is_terminal(event):
                    return
            if local.failure is not None:  # Redis does not have the rest
                return
        async for item in self._subscribe_shared(run_id, after):
            yield item

    async def _subscribe_shared(
        self, run_id: str, after: int
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
                for event_id, event in _entry(stream_id, fields):
                    if event_id <= after:  # had it: a batch sent again after a cut
                        continue
                    after = event_id
                    yield event_id, event
                    if is_terminal(event):
                        return

    async def _read(self, run_id: str, stream: str, last: str, block: int | None) -> Any:
        while True:
            try:
                read = await self.redis.xread({stream: last}, count=500, block=block)
            except _RETRYABLE:
                log.warning("redis_read_retry", run_id=run_id)
                await asyncio.sleep(0.1)
                continue
            _cancel_kept()
            return read

    async def _state(self, run_id: str) -> str:
        """``done`` (the terminal event is written), ``live``, or ``gone`` (expired)."""
        while True:
            try:
                async with self.redis.pipeline(transaction=False) as pipe:
                    pipe.exists(_key(run_id, "done"))
                    pipe.exists(_key(run_id, "events"), _key(run_id, "live"))
                    done, held = await pipe.execute()
                _cancel_kept()
                return "done" if done else "live" if held else "gone"
            except _RETRYABLE:
                log.warning("redis_read_retry", run_id=run_id)
                await asyncio.sleep(0.1)

    async def _terminal(self, stream: str) -> AsyncIterator[tuple[int, EngineEvent]]:
        newest: Any = await self.redis.xrevrange(stream, "+", "-", count=1)
        _cancel_kept()
        for stream_id, fields in newest:
            event_id, event = _entry(stream_id, fields)[-1]
            if is_terminal(event):
                yield event_id, event

    async def exists(self, run_id: str) -> bool:
        if run_id in self._local:
            return True
        return bool(await self.redis.exists(_key(run_id, "events"), _key(run_id, "live")))

    async def last_id(self, run_id: str) -> int:
        local = self._local.get(run_id)
        if local is not None:
            with contextlib.suppress(Exception):  # what it could not write is still its id
                await self._drain(local)
            return local.log.base + len(local.log.events)
        try:
            info: Any = await self.redis.xinfo_stream(_key(run_id, "events"))
        except aioredis.ResponseError:  # no such stream
            return 0
        return _seq(info["last-generated-id"])

    async def is_finished(self, run_id: str) -> bool:
        local = self._local.get(run_id)
        if local is not None:
            return local.log.finished_at is not None
        return bool(await self.redis.exists(_key(run_id, "done")))

    # ownership and control -------------------------------------------------------------------

    async def own(self, run_id: str, handler: ControlHandler) -> None:
        """Route the run's control messages here, and keep its events in memory from the id
        its stream has reached (0 for a new run)."""
        self._handlers[run_id] = handler
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(_key(run_id, "owner"), self.instance, px=int(self.owner_ttl * 1000))
            pipe.xinfo_stream(_key(run_id, "events"))
            owned, info = await pipe.execute(raise_on_error=False)
        if isinstance(owned, Exception):
            raise owned
        if run_id not in self._local:
            base = 0 if isinstance(info, Exception) else _seq(info["last-generated-id"])
            self._local[run_id] = _Local(run_id, RunLog(base=base, held=True), written=base)

    async def disown(self, run_id: str) -> None:
        """The run stopped here without ending (suspended, or shut down): its events are
        written, and this process's readers go on from Redis."""
        self._handlers.pop(run_id, None)
        local = self._local.pop(run_id, None)
        if local is not None:
            with contextlib.suppress(Exception):  # a failure is logged; its run has ended
                await self._drain(local)
            local.log.moved = True
            local.log.wake()
            if local.ended:  # its owner key went with the end
                return
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
        if self._writer is not None:
            await asyncio.gather(self._writer, return_exceptions=True)
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
