"""Serving the app with uvicorn, in one process or several sharing one listening socket."""

from __future__ import annotations

import gc
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from fastapi import FastAPI
from uvicorn.supervisors import Multiprocess

from parley.app import create_app


class ServeConfig(uvicorn.Config):
    """uvicorn's config, with TCP_NODELAY on the socket that worker processes share.

    One process binds with ``host``/``port`` and asyncio sets TCP_NODELAY on each connection.
    Workers accept from a socket uvicorn binds itself, without it: the first body write of every
    streamed response on a kept-alive connection then waited ~40 ms for the client's delayed ACK
    (Nagle). Linux gives accepted sockets the listening socket's TCP_NODELAY.
    """

    def bind_socket(self) -> socket.socket:
        sock = super().bind_socket()
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock


def served_app() -> FastAPI:
    """The app as ``parley serve`` runs it: once started, everything it holds for its lifetime
    (modules, settings, registries, clients; ~235,000 objects) is moved out of the garbage
    collector's sight, so that full collections, which pause every stream, walk only what the
    streams themselves hold (bench/RESULTS.md).

    Raising the collector's thresholds as well held more paced streams in the benchmark, but in
    the soak (``make soak``) the memory grew without levelling off, so the defaults stay.
    """
    app = create_app()
    started = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[Any]:
        async with started(app) as state:
            gc.collect()
            gc.freeze()
            yield state

    app.router.lifespan_context = lifespan
    return app


def run(*, host: str, port: int, workers: int = 1) -> None:
    """Serve :func:`served_app` until stopped."""
    config = ServeConfig(
        "parley.serving:served_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="warning",
        timeout_graceful_shutdown=5,
    )
    if workers > 1:
        Multiprocess(config, sockets=[config.bind_socket()]).run()
    else:
        uvicorn.Server(config).run()
