"""``parley serve --workers N`` shares one listening socket; its connections must not wait on Nagle."""

from __future__ import annotations

import gc
import socket
from pathlib import Path

import pytest
from asgi_lifespan import LifespanManager

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
