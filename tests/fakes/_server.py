"""A scripted HTTP server on a real socket: the base of the fake model APIs.

Each request takes the next :class:`Scenario` from a queue (or :attr:`FakeServer.default`). A
scenario is a status, headers and a list of steps: bytes frames written one by one, a
:class:`Pause`, a :class:`Hang` (wait until the client goes away) or a :class:`Drop` (close the
connection without ending the body). The server records every request as an :class:`Exchange`,
including whether the client cut the response off, so tests can prove a cancel reached it.

It runs uvicorn's HTTP protocol on a socket of its own, in the caller's event loop, without
``uvicorn.Server``'s polling main loop: starting and stopping take no time.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import anyio
import anyio.lowlevel
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send
from uvicorn.server import ServerState


@dataclass(frozen=True)
class Pause:
    """Wait this many seconds (pacing, not synchronisation)."""

    seconds: float


@dataclass(frozen=True)
class Hang:
    """Send nothing more until the client goes away or the server stops."""


@dataclass(frozen=True)
class Drop:
    """Close the connection without finishing the body."""


Step = bytes | Pause | Hang | Drop


@dataclass
class Scenario:
    """What the server does with one request.

    ``steps`` may be a list (reusable, e.g. as :attr:`FakeServer.default`) or any iterable;
    ``interval`` pauses between frames; ``hold_headers`` hangs before the status line is sent.
    """

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    steps: Iterable[Step] = ()
    interval: float = 0.0
    hold_headers: bool = False
    media_type: str = "text/event-stream"


def hang() -> Scenario:
    """Accept the request and never answer: the client's timeout must fire."""
    return Scenario(hold_headers=True)


def json_reply(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Scenario:
    """A plain JSON response."""
    return Scenario(
        status=status,
        headers=headers or {},
        steps=[json.dumps(body).encode()],
        media_type="application/json",
    )


@dataclass
class Exchange:
    """One request the server got, and what became of its response."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    at: float = field(default_factory=time.monotonic)
    frames_sent: int = 0
    finished: bool = False
    cut_off: bool = False
    cut_off_at: float | None = None


class FakeServer:
    """Serves scripted scenarios on ``127.0.0.1`` at a free port; use ``async with``.

    ``active`` counts responses still being played: back to 0 once every client has read its
    response to the end or gone away (a client that leaks a connection keeps it above 0).
    """

    routes: tuple[tuple[str, str], ...] = ()

    def __init__(self) -> None:
        self.default: Scenario | None = None
        self.exchanges: list[Exchange] = []
        self.unexpected = 0
        self.active = 0
        self.cut_off = asyncio.Event()
        self.received = asyncio.Event()  # set at the first request
        self._queue: deque[Scenario] = deque()
        self._stopping = asyncio.Event()
        # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say they are TCP.
        # Without it a response's first body write waits ~40 ms for the client's delayed ACK
        # on a kept-alive connection, which the benchmark's first-token times would show.
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._state = ServerState()
        self._listener: asyncio.Server | None = None

    @property
    def url(self) -> str:
        host, port = self._socket.getsockname()
        return f"http://{host}:{port}"

    @property
    def requests(self) -> list[Any]:
        """The JSON bodies received, in order."""
        return [exchange.body for exchange in self.exchanges]

    @property
    def pending(self) -> int:
        """Scenarios enqueued but not used yet."""
        return len(self._queue)

    def enqueue(self, *scenarios: Scenario) -> None:
        self._queue.extend(scenarios)

    def assert_done(self) -> None:
        assert not self._queue, f"{len(self._queue)} scenario(s) left unused"
        assert not self.unexpected, f"{self.unexpected} request(s) had no scenario"

    async def __aenter__(self) -> Self:
        self._socket.bind(("127.0.0.1", 0))
        routes = [Route(path, self._handle, methods=[method]) for method, path in self.routes]
        config = uvicorn.Config(Starlette(routes=routes), log_level="warning", lifespan="off")
        config.load()
        state = self._state

        def protocol() -> asyncio.Protocol:
            return config.http_protocol_class(config=config, server_state=state, app_state={})  # type: ignore[call-arg]

        loop = asyncio.get_running_loop()
        self._listener = await loop.create_server(protocol, sock=self._socket)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop at once: release hanging responses, close connections, wait for the handlers."""
        assert self._listener is not None
        self._stopping.set()
        self._listener.close()
        for connection in list(self._state.connections):
            connection.shutdown()
        await asyncio.gather(*self._state.tasks)
        await self._listener.wait_closed()

    async def _handle(self, request: Request) -> Response:
        body = await request.body()
        exchange = Exchange(
            method=request.method,
            path=request.url.path,
            headers=dict(request.headers),
            body=json.loads(body) if body else None,
        )
        self.exchanges.append(exchange)
        self.received.set()
        scenario = self._queue.popleft() if self._queue else self.default
        if scenario is None:
            self.unexpected += 1
            scenario = json_reply({"error": {"message": "fake server: no scenario"}}, 418)
        return _Playback(scenario, exchange, self)


class _Playback(Response):
    """Plays a scenario while watching for the client going away."""

    def __init__(self, scenario: Scenario, exchange: Exchange, server: FakeServer) -> None:
        self.scenario = scenario
        self.exchange = exchange
        self.server = server

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.server.active += 1
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(self._watch, receive, group.cancel_scope)
                await self._play(send)
                group.cancel_scope.cancel()
        finally:
            self.server.active -= 1

    async def _watch(self, receive: Receive, scope: anyio.CancelScope) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        if not self.exchange.finished:
            self.exchange.cut_off = True
            self.exchange.cut_off_at = time.monotonic()
            self.server.cut_off.set()
        scope.cancel()

    async def _play(self, send: Send) -> None:
        scenario = self.scenario
        if scenario.hold_headers:
            await self.server._stopping.wait()
            return
        headers = [(b"content-type", scenario.media_type.encode())]
        headers += [(k.lower().encode(), v.encode()) for k, v in scenario.headers.items()]
        await send({"type": "http.response.start", "status": scenario.status, "headers": headers})
        for step in scenario.steps:
            if isinstance(step, Drop):
                return
            if isinstance(step, Hang):
                await self.server._stopping.wait()
                return
            if isinstance(step, Pause):
                await anyio.sleep(step.seconds)
                continue
            if self.exchange.frames_sent and scenario.interval:
                await anyio.sleep(scenario.interval)
            else:
                await anyio.lowlevel.checkpoint()  # lets the watcher see a disconnect
            await send({"type": "http.response.body", "body": step, "more_body": True})
            self.exchange.frames_sent += 1
        self.exchange.finished = True
        await send({"type": "http.response.body", "body": b"", "more_body": False})
