"""Serving the app with uvicorn, in one process or several sharing one listening socket.

parley binds the socket itself, before the app starts: a port in use is a one-line
:class:`~parley.errors.PortInUse`, and the address is announced once it accepts connections.
"""

from __future__ import annotations

import errno
import gc
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from fastapi import FastAPI
from uvicorn.supervisors import Multiprocess

from parley.app import create_app
from parley.errors import ConfigError, PortInUse
from parley.gc_schedule import FullCollections

BACKLOG = 2048  # uvicorn's


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: a free one), with TCP_NODELAY.

    Linux gives accepted sockets the listening socket's TCP_NODELAY: without it, the first body
    write of every streamed response on a kept-alive connection waited ~40 ms for the client's
    delayed ACK (Nagle) in worker processes. Raises :class:`PortInUse` when another process
    listens there, :class:`ConfigError` for any other refusal (an unknown host, a privileged port).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortInUse(host, port) from exc
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.set_inheritable(True)  # worker processes serve it too
    return sock


def url_of(host: str, sock: socket.socket, path: str = "/") -> str:
    """The URL clients use for ``sock``, with the port it really has (``--port 0`` picks one)."""
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{sock.getsockname()[1]}{path}"


class AnnouncingServer(uvicorn.Server):
    """uvicorn's server, calling ``on_started`` once the app has started and the sockets it was
    given accept connections (uvicorn announces only the sockets it binds itself)."""

    def __init__(self, config: uvicorn.Config, on_started: Callable[[], None]) -> None:
        super().__init__(config)
        self.on_started = on_started

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self.on_started()


def served_app() -> FastAPI:
    """The app as ``parley serve`` runs it: once started, everything it holds for its lifetime
    (modules, settings, registries, clients) is moved out of the garbage collector's sight, so
    that full collections, which pause every stream, walk only what the streams themselves hold,
    and those are run at quiet moments (:class:`FullCollections`).
    """
    app = create_app()
    started = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[Any]:
        async with started(app) as state:
            gc.collect()
            gc.freeze()
            services = app.state.services
            collections = FullCollections(
                services.settings.full_collection_interval, busy=services.runs.running
            )
            collections.start()
            try:
                yield state
            finally:
                await collections.stop()

    app.router.lifespan_context = lifespan
    return app


def run(
    *,
    host: str,
    port: int,
    workers: int = 1,
    grace: float = 25.0,
    on_started: Callable[[str], None] = lambda url: None,
) -> None:
    """Serve :func:`served_app` until stopped; ``on_started(url)`` once it accepts connections
    (with workers, once the socket they share listens: connections wait there until one starts).

    On SIGTERM it takes no new connection and lets running replies go on for ``grace`` seconds,
    their streams open, before it stops them (:class:`parley.api.streaming.EventStream`,
    :meth:`parley.runs.manager.RunManager.aclose`).

    Raises :class:`PortInUse` or :class:`ConfigError` before anything starts.
    """
    sock = listen(host, port)
    url = url_of(host, sock)
    config = uvicorn.Config(
        "parley.serving:served_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="warning",
        timeout_graceful_shutdown=int(grace) + 2,  # streams end cleanly at ``grace`` (streaming.py)
        # Longer than the clients' and proxies' own idle timeouts (httpx 5 s, browsers, a load
        # balancer's 60 s): with uvicorn's 5 s, a client that reuses a connection just as the
        # server closes it gets a reset instead of a response (seen in the soak).
        timeout_keep_alive=75,
    )
    if workers > 1:
        on_started(url)
        Multiprocess(config, sockets=[sock]).run()
    else:
        AnnouncingServer(config, lambda: on_started(url)).run(sockets=[sock])
