"""``parley serve --workers N`` shares one listening socket; its connections must not wait on Nagle."""

from __future__ import annotations

import asyncio
import gc
import socket
from pathlib import Path

import pytest
from asgi_lifespan import LifespanManager
from tests.support.processes import fake_openai_env, start_parley

from parley.serving import ServeConfig, served_app


def test_the_socket_workers_share_gives_its_connections_tcp_nodelay() -> None:
    config = ServeConfig("parley.app:create_app", factory=True, host="127.0.0.1", port=0)
    listener = config.bind_socket()
    listener.listen()  # uvicorn listens when it serves
    try:
        with socket.create_connection(listener.getsockname()) as _client:
            accepted, _ = listener.accept()
            with accepted:
                assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    finally:
        listener.close()


async def test_the_served_app_moves_what_it_holds_for_life_out_of_the_collectors_sight(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PARLEY_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("PARLEY_PROVIDER", "scripted")
    gc.unfreeze()
    try:
        async with LifespanManager(served_app()):
            assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


async def test_parley_serve_keeps_an_idle_connection_longer_than_clients_do(
    sqlite_url: str, tmp_path: Path
) -> None:
    """Clients (httpx, browsers) reuse a connection idle for up to about 5 s; a server that
    closes it at 5 s races them, and the loser gets a reset instead of a response."""
    env = fake_openai_env(sqlite_url, "http://127.0.0.1:9/v1", tmp_path, "s" * 40)
    parley = await start_parley(env, tmp_path)
    reader, writer = await asyncio.open_connection("127.0.0.1", parley.port)
    try:
        request = b"GET /healthz HTTP/1.1\r\nHost: parley\r\n\r\n"
        for attempt in range(2):
            if attempt:
                await asyncio.sleep(6)  # idle past uvicorn's default keep-alive (5 s)
            writer.write(request)
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            assert head.startswith(b"HTTP/1.1 200"), head
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
    finally:
        writer.close()
        parley.stop()
