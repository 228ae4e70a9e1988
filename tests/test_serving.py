"""``parley serve --workers N`` shares one listening socket; its connections must not wait on Nagle."""

from __future__ import annotations

import asyncio
import gc
import socket
import weakref
from pathlib import Path

import pytest
from asgi_lifespan import LifespanManager
from tests.support.processes import fake_openai_env, start_parley

from parley.serving import FullCollections, ServeConfig, served_app


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


class _Cycle:
    def __init__(self) -> None:
        self.me = self


def _garbage_in_the_oldest_generation() -> asyncio.Event:
    """A reference cycle that only a full collection can free; the event is set when it is."""
    freed = asyncio.Event()
    garbage = _Cycle()
    weakref.finalize(garbage, freed.set)
    gc.collect(1)
    gc.collect(1)  # promoted to the oldest generation, which only a full collection walks
    del garbage
    for _ in range(100):  # many middle collections: none of them is a full one
        gc.collect(1)
    assert not freed.is_set()
    return freed


async def test_full_collections_wait_for_a_quiet_moment_and_free_what_reached_the_oldest() -> None:
    """CPython no longer starts a full collection by its counts (each pauses every stream);
    the collector does it once no run is in progress, and cyclic garbage that reached the
    oldest generation is freed then. When it stops, the schedule is Python's again."""
    saved = gc.get_threshold()
    gc.collect()
    runs = [1]
    collections = FullCollections(0.05, busy=lambda: len(runs), longest=60, check=0.01)
    collections.start()
    try:
        assert gc.get_threshold()[:2] == saved[:2]
        assert gc.get_threshold()[2] >= 2**30
        freed = _garbage_in_the_oldest_generation()
        await asyncio.sleep(0.3)  # six intervals, but a run is in progress
        assert not freed.is_set()
        runs.clear()
        await asyncio.wait_for(freed.wait(), 2)
    finally:
        await collections.stop()
    assert gc.get_threshold() == saved


async def test_under_constant_load_a_full_collection_still_comes() -> None:
    gc.collect()
    collections = FullCollections(0.05, busy=lambda: 1, longest=0.3, check=0.01)
    collections.start()
    try:
        freed = _garbage_in_the_oldest_generation()
        await asyncio.sleep(0.1)
        assert not freed.is_set()
        await asyncio.wait_for(freed.wait(), 2)
    finally:
        await collections.stop()


async def test_full_collections_on_a_clock_can_be_turned_off() -> None:
    saved = gc.get_threshold()
    collections = FullCollections(0)
    collections.start()
    assert gc.get_threshold() == saved
    await collections.stop()


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
