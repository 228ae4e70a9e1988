"""The SSE response every streaming door uses: frames, pings, disconnects, HEAD, shutdown,
coalescing. Driven as a bare ASGI app, so each behaviour is seen on the wire it writes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from sse_starlette import ServerSentEvent
from sse_starlette.sse import AppStatus
from tests.support.wait import until

from parley.api.streaming import EventStream, stop_streams_after

SCOPE = {"type": "http", "method": "POST", "path": "/x", "headers": []}


class Wire:
    """What the response sent, and a receive() that says "gone" when told."""

    def __init__(self, *, send_delay: float = 0.0) -> None:
        self.messages: list[dict[str, Any]] = []
        self.gone = asyncio.Event()
        self.send_delay = send_delay

    async def receive(self) -> dict[str, Any]:
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        if self.send_delay and message["type"] == "http.response.body" and message["body"]:
            await asyncio.sleep(self.send_delay)
        self.messages.append(message)

    @property
    def bodies(self) -> list[bytes]:
        return [m["body"] for m in self.messages if m["type"] == "http.response.body"]

    @property
    def text(self) -> str:
        return b"".join(self.bodies).decode()


class Frames:
    """An async iterator of frames fed by the test; records whether it was closed."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[ServerSentEvent | None] = asyncio.Queue()
        self.closed = False

    async def __call__(self) -> AsyncIterator[ServerSentEvent]:
        try:
            while (frame := await self.queue.get()) is not None:
                yield frame
        finally:
            self.closed = True


async def test_frames_in_order_then_the_end_of_the_body() -> None:
    frames, wire = Frames(), Wire()
    for i in range(3):
        frames.queue.put_nowait(ServerSentEvent(data=f"d{i}", event="content", id=str(i + 1)))
    frames.queue.put_nowait(None)
    await EventStream(frames(), headers={"Cache-Control": "no-cache"})(
        SCOPE, wire.receive, wire.send
    )

    start = wire.messages[0]
    headers = dict(start["headers"])
    assert start["status"] == 200
    assert headers[b"content-type"] == b"text/event-stream; charset=utf-8"
    assert headers[b"cache-control"] == b"no-cache"
    assert headers[b"x-accel-buffering"] == b"no"
    assert [f"id: {i + 1}" in wire.text for i in range(3)] == [True] * 3
    assert wire.text.index("d0") < wire.text.index("d1") < wire.text.index("d2")
    assert wire.messages[-1] == {"type": "http.response.body", "body": b"", "more_body": False}
    assert frames.closed


async def test_an_idle_stream_is_pinged() -> None:
    frames, wire = Frames(), Wire()
    task = asyncio.create_task(EventStream(frames(), ping=0.05)(SCOPE, wire.receive, wire.send))
    await asyncio.sleep(0.18)
    frames.queue.put_nowait(None)
    await asyncio.wait_for(task, 2)
    assert wire.text.count(": ping") >= 2


async def test_a_stream_that_keeps_talking_is_not_pinged() -> None:
    """A ping is for silence (DESIGN: every 15 s of silence), not a fixed beat."""
    frames, wire = Frames(), Wire()
    task = asyncio.create_task(EventStream(frames(), ping=0.1)(SCOPE, wire.receive, wire.send))
    for i in range(12):
        frames.queue.put_nowait(ServerSentEvent(data=f"d{i}"))
        await asyncio.sleep(0.03)
    frames.queue.put_nowait(None)
    await asyncio.wait_for(task, 2)
    assert "d11" in wire.text
    assert ": ping" not in wire.text


async def test_a_client_that_goes_away_ends_the_response_and_closes_the_frames() -> None:
    frames, wire = Frames(), Wire()
    task = asyncio.create_task(EventStream(frames())(SCOPE, wire.receive, wire.send))
    frames.queue.put_nowait(ServerSentEvent(data="before"))
    await asyncio.sleep(0.05)
    wire.gone.set()
    await asyncio.wait_for(task, 2)
    frames.queue.put_nowait(ServerSentEvent(data="after"))
    await asyncio.sleep(0.05)
    assert "before" in wire.text
    assert "after" not in wire.text
    assert frames.closed
    assert not any(m.get("more_body") is False for m in wire.messages), "no end after a disconnect"


async def test_head_sends_headers_and_no_stream() -> None:
    frames, wire = Frames(), Wire()
    frames.queue.put_nowait(ServerSentEvent(data="never read"))
    scope = {**SCOPE, "method": "HEAD"}
    await asyncio.wait_for(EventStream(frames())(scope, wire.receive, wire.send), 2)
    assert wire.messages[0]["status"] == 200
    assert wire.bodies == [b""]


async def test_server_shutdown_ends_open_streams() -> None:
    frames, wire = Frames(), Wire()
    task = asyncio.create_task(EventStream(frames())(SCOPE, wire.receive, wire.send))
    await asyncio.sleep(0.05)
    AppStatus.should_exit = True
    try:
        await asyncio.wait_for(task, 3)
    finally:
        AppStatus.should_exit = False
    assert frames.closed
    assert wire.messages[-1] == {"type": "http.response.body", "body": b"", "more_body": False}


async def test_during_the_shutdown_grace_streams_go_on_then_end_cleanly() -> None:
    frames, wire = Frames(), Wire()
    task = asyncio.create_task(EventStream(frames())(SCOPE, wire.receive, wire.send))
    stop_streams_after(1.0)
    AppStatus.should_exit = True
    try:
        frames.queue.put_nowait(ServerSentEvent(data="after the signal"))
        await until(lambda: "after the signal" in wire.text)
        assert not task.done()
        await asyncio.wait_for(task, 5)
    finally:
        AppStatus.should_exit = False
        stop_streams_after(0.0)
    assert frames.closed
    assert wire.messages[-1] == {"type": "http.response.body", "body": b"", "more_body": False}


async def test_frames_made_during_a_slow_write_go_out_together() -> None:
    frames, wire = Frames(), Wire(send_delay=0.1)
    task = asyncio.create_task(EventStream(frames())(SCOPE, wire.receive, wire.send))
    frames.queue.put_nowait(ServerSentEvent(data="first"))
    await asyncio.sleep(0.02)  # the first write is under way
    for i in range(50):
        frames.queue.put_nowait(ServerSentEvent(data=f"next{i}"))
    frames.queue.put_nowait(None)
    await asyncio.wait_for(task, 5)
    written = [b for b in wire.bodies if b]
    assert b"first" in written[0]
    assert len(written) == 2, [len(b) for b in written]  # the 50 that waited: one write
    assert all(f"next{i}" in wire.text for i in range(50))


async def test_a_reader_that_stops_reading_stops_the_encoding() -> None:
    """At most ``write_limit`` bytes wait: the frames are not pulled ahead of the socket."""
    limit = 64  # a frame here is about 50 bytes: two frames fill it
    pulled = 0

    async def endless() -> AsyncIterator[ServerSentEvent]:
        nonlocal pulled
        while True:
            pulled += 1
            yield ServerSentEvent(data="x" * 40)

    blocked = asyncio.Event()

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            await blocked.wait()  # the client never reads

    wire = Wire()
    task = asyncio.create_task(EventStream(endless(), write_limit=limit)(SCOPE, wire.receive, send))
    await asyncio.sleep(0.1)
    assert pulled <= 4, pulled
    wire.gone.set()
    blocked.set()
    await asyncio.wait_for(task, 2)
