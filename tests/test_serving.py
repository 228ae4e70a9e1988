"""``parley serve``: it binds its socket itself (a port in use is one line, the URL is shown once
it answers), its connections do not wait on Nagle, and full collections wait for quiet moments."""

from __future__ import annotations

import asyncio
import gc
import os
import socket
import subprocess
import sys
import weakref
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager
from tests.support.lines import parley
from tests.support.processes import fake_openai_env, start_parley

from parley.errors import PortInUse
from parley.gc_schedule import FullCollections
from parley.serving import listen, served_app


def test_the_listening_socket_gives_its_connections_tcp_nodelay() -> None:
    listener = listen("127.0.0.1", 0)
    try:
        with socket.create_connection(listener.getsockname()) as _client:
            accepted, _ = listener.accept()
            with accepted:
                assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    finally:
        listener.close()


def test_a_port_another_process_listens_on_is_a_port_in_use_error() -> None:
    with socket.create_server(("127.0.0.1", 0)) as held:
        port = held.getsockname()[1]
        with pytest.raises(PortInUse) as caught:
            listen("127.0.0.1", port)
    assert caught.value.message == f"port {port} on 127.0.0.1 is in use"
    assert (caught.value.host, caught.value.port) == ("127.0.0.1", port)


@pytest.mark.parametrize("given_as", ["--port", "PARLEY_PORT"])
def test_parley_serve_on_a_port_in_use_says_so_in_one_line_and_exits_1(
    tmp_path: Path, given_as: str
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as held:
        port = held.getsockname()[1]
        args = ["--port", str(port)] if given_as == "--port" else []
        env = {"PARLEY_PORT": str(port)} if given_as == "PARLEY_PORT" else {}
        done = subprocess.run(
            [sys.executable, "-m", "parley", "serve", *args],
            env={**_serve_env(tmp_path), **env},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 1
    assert done.stderr == (
        f"parley: port {port} on 127.0.0.1 is in use; "
        f"choose another with --port {port + 1} or PARLEY_PORT={port + 1}\n"
    )
    assert done.stdout == ""


def test_parley_serve_shows_its_url_once_the_port_answers(tmp_path: Path) -> None:
    """``--port 0``: only the bound socket knows the port, and the URL shown must answer at once."""
    with parley("serve", "--port", "0", env=_serve_env(tmp_path), cwd=tmp_path) as output:
        url = output.wait_for(r"parley \S+ on (http://127\.0\.0\.1:\d+/)").group(1)
        response = httpx.get(f"{url}healthz", timeout=10)
    assert response.status_code == 200
    assert "Traceback" not in output.text


def _serve_env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PARLEY_DATA_DIR": str(tmp_path / "data"),
        "PARLEY_PROVIDER": "scripted",
    }


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
        request = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
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


def test_parley_serve_refuses_auth_none_beyond_loopback_in_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "parley", "serve", "--host", "0.0.0.0", "--port", "0"],
        env={**_serve_env(tmp_path), "PARLEY_AUTH": "none"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr == (
        "parley: PARLEY_AUTH=none lets anyone who reaches 0.0.0.0 act as user 'local'; serve it"
        " on 127.0.0.1, or set PARLEY_AUTH_NONE_PUBLIC=true if that is meant\n"
    )
    assert done.stdout == ""


def test_parley_serve_with_auth_none_says_so_and_serves_without_a_token(tmp_path: Path) -> None:
    env = {**_serve_env(tmp_path), "PARLEY_AUTH": "none"}
    with parley("serve", "--port", "0", env=env, cwd=tmp_path) as output:
        url = output.wait_for(r"parley \S+ on (http://127\.0\.0\.1:\d+/)").group(1)
        output.wait_for(r"auth: none \(PARLEY_AUTH=none\): every request is user 'local'")
        response = httpx.post(f"{url}sessions", json={}, timeout=10)
    assert response.status_code == 201
    assert "Sign in:" not in output.text
