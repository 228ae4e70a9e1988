"""Turn a run's event stream into an SSE response through an encoder.

One response holds two tasks besides the request's own: the encoder (which follows the run's
events and turns them into frames) and a watcher (which notices the client going away). The
request's task writes. Pings are a timer, and server shutdown is one watcher for all streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping

import structlog
from sse_starlette import ServerSentEvent
from sse_starlette.sse import AppStatus
from starlette.background import BackgroundTask
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from parley.chat.events import EngineEvent
from parley.protocols.base import Encoder, sse

log = structlog.get_logger("parley.stream")

PING = sse(comment="ping").encode()


async def encoded(
    encoder: Encoder, events: AsyncIterator[tuple[int, EngineEvent]]
) -> AsyncIterator[ServerSentEvent]:
    for frame in encoder.before_stream():
        yield frame
    try:
        async for seq, event in events:
            for frame in encoder.encode(seq, event):
                yield frame
    except Exception as exc:
        log.warning("stream_failed", error=str(exc))
        for frame in encoder.on_error(exc):
            yield frame
    for frame in encoder.after_stream():
        yield frame


class _Coalescer:
    """Frames encoded by one task, written by another: whatever was encoded while the previous
    write was under way goes out as one write.

    A fast model's chunks arrive many to a socket read and become many events at once; writing
    them together costs one pass through the ASGI send path instead of one per event (the
    benchmark's CPU per event). A paced stream still gets one write per event, at once. At most
    ``limit`` bytes wait here: a client that stops reading stops the encoding, not the run.
    """

    def __init__(self, frames: AsyncIterator[ServerSentEvent], limit: int) -> None:
        self.frames = frames
        self.limit = limit
        self.pending: list[bytes] = []
        self.size = 0
        # Futures only while one side waits, not two asyncio.Events per stream (each with its
        # own deque of waiters, held for as long as the stream is open).
        self._writer: asyncio.Future[None] | None = None  # the response, waiting for frames
        self._encoder: asyncio.Future[None] | None = None  # the encoder, waiting for room
        self.finished = False
        self.stopped = False
        self.client_gone = False
        self.last_write = time.monotonic()

    async def fill(self) -> None:
        try:
            async for frame in self.frames:
                self.put(frame.encode())
                if self.size >= self.limit:
                    self._encoder = asyncio.get_running_loop().create_future()
                    try:
                        await self._encoder
                    finally:
                        self._encoder = None
        finally:
            self.finished = True
            _wake(self._writer)

    def put(self, data: bytes) -> None:
        self.pending.append(data)
        self.size += len(data)
        _wake(self._writer)

    def ping(self) -> None:
        """Keep an idle connection open through proxies (nothing else waiting to go)."""
        if not self.pending:
            self.put(PING)

    def stop(self, *, client_gone: bool = False) -> None:
        """The client went away or the server is stopping: write nothing more."""
        self.stopped = True
        self.client_gone = self.client_gone or client_gone
        _wake(self._writer)

    def take(self) -> bytes:
        self.last_write = time.monotonic()
        data = b"".join(self.pending)
        self.pending.clear()
        self.size = 0
        _wake(self._encoder)
        return data

    async def chunks(self) -> AsyncGenerator[bytes, None]:
        """What to write, as it comes; ends when the frames end or the stream is stopped."""
        filling = asyncio.create_task(self.fill())
        try:
            while not self.stopped:
                if self.pending:
                    yield self.take()
                elif self.finished:
                    break
                else:
                    self._writer = asyncio.get_running_loop().create_future()
                    try:
                        await self._writer
                    finally:
                        self._writer = None
            if not self.stopped:
                await filling  # re-raises what ended the encoding, if anything did
        finally:
            filling.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await filling


def _wake(waiter: asyncio.Future[None] | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(None)


class _Shutdown:
    """Ends every open stream ``grace`` seconds after the server is told to stop (SIGTERM,
    Ctrl-C): running replies go on meanwhile and their streams end with them, and what runs
    longer ends cleanly before uvicorn's own graceful timeout cuts the connections (its runs go
    on, or are marked interrupted, and clients resume them). One poller per event loop, only
    while streams are open; uvicorn's exit flag is the one sse-starlette keeps."""

    def __init__(self) -> None:
        self.open: set[_Coalescer] = set()
        self.poller: asyncio.Task[None] | None = None
        self.grace = 0.0
        self.deadline: float | None = None  # on the loop's clock, once the server is stopping

    def add(self, stream: _Coalescer) -> None:
        self.open.add(stream)
        loop = asyncio.get_running_loop()
        if self.poller is None or self.poller.done() or self.poller.get_loop() is not loop:
            self.poller = loop.create_task(self.poll())

    def discard(self, stream: _Coalescer) -> None:
        self.open.discard(stream)

    async def poll(self) -> None:
        loop = asyncio.get_running_loop()
        while self.open:
            if not AppStatus.should_exit:
                self.deadline = None
            elif self.deadline is None:
                self.deadline = loop.time() + self.grace
            if self.deadline is not None and loop.time() >= self.deadline:
                for stream in list(self.open):
                    stream.stop()
                return
            await asyncio.sleep(0.5)


_shutdown = _Shutdown()


def stop_streams_after(grace: float) -> None:
    """How long open streams go on once the server is told to stop (``shutdown_grace``); set as
    a server starts."""
    _shutdown.grace = grace
    _shutdown.deadline = None


class EventStream(Response):
    """A ``text/event-stream`` response over encoded frames, with pings while idle."""

    def __init__(
        self,
        frames: AsyncIterator[ServerSentEvent],
        *,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        media_type: str = "text/event-stream",
        ping: float = 15.0,
        write_limit: int = 64 * 1024,
        background: BackgroundTask | None = None,
    ) -> None:
        self.frames = frames
        self.status_code = status_code
        self.media_type = media_type
        self.background = background
        self.ping_interval = ping
        self.write_limit = write_limit
        self.init_headers(
            {**(headers or {}), "Connection": "keep-alive", "X-Accel-Buffering": "no"}
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        head = str(scope.get("method", "GET")).upper() == "HEAD"
        await self.stream(head, receive, send)

    async def stream(self, head: bool, receive: Receive, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        if head:
            close = getattr(self.frames, "aclose", None)
            if close is not None:
                await close()
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        stream = _Coalescer(self.frames, self.write_limit)
        watcher = asyncio.create_task(_watch_disconnect(receive, stream))
        pinger = _Pinger(stream, self.ping_interval)
        _shutdown.add(stream)
        try:
            async with contextlib.aclosing(stream.chunks()) as chunks:
                async for chunk in chunks:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            if not stream.client_gone:  # ended, or ended early by a shutdown: a clean end
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            _shutdown.discard(stream)
            pinger.cancel()
            watcher.cancel()
        if self.background is not None:
            await self.background()


async def _watch_disconnect(receive: Receive, stream: _Coalescer) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            stream.stop(client_gone=True)
            return


class _Pinger:
    """``: ping`` after ``interval`` seconds of silence: a timer, not a task."""

    def __init__(self, stream: _Coalescer, interval: float) -> None:
        self.stream = stream
        self.interval = interval
        self.handle: asyncio.TimerHandle | None = None
        if interval > 0:
            self.handle = asyncio.get_running_loop().call_later(interval, self.tick)

    def tick(self) -> None:
        silent = time.monotonic() - self.stream.last_write
        if silent >= self.interval * 0.99:
            self.stream.ping()
            silent = 0.0
        self.handle = asyncio.get_running_loop().call_later(self.interval - silent, self.tick)

    def cancel(self) -> None:
        if self.handle is not None:
            self.handle.cancel()


def sse_response(
    encoder: Encoder,
    events: AsyncIterator[tuple[int, EngineEvent]],
    *,
    ping: float = 15.0,
    status_code: int = 200,
    write_limit: int = 64 * 1024,
) -> EventStream:
    return EventStream(
        encoded(encoder, events),
        status_code=status_code,
        headers=encoder.headers,
        media_type=encoder.content_type,
        ping=ping,
        write_limit=write_limit,
    )
