"""``parley serve --workers N`` shares one listening socket; its connections must not wait on Nagle."""

from __future__ import annotations

import socket

from parley.serving import ServeConfig


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
