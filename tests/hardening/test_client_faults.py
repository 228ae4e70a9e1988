"""Client faults against a real ``parley serve`` on FakeOpenAI's paced streams (DESIGN.md section 1,
"Runs"): a run belongs to no connection.

* 500 clients start or follow a run and vanish mid-stream (a FIN or a RST): every run still ends
  ``complete`` with its whole text, no upstream response outlives its run, the server's memory
  does not grow with the number of clients, and ``/healthz`` answers at once throughout;
* slow readers that never read a byte: other clients are not held up, the runs complete, and the
  server buffers a bounded amount per reader rather than the whole stream;
* reconnect storms: clients drop and come back with ``Last-Event-ID`` over and over, and each ends
  with exactly the events of one uninterrupted read: no gap, no duplicate, the whole reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import socket
import struct
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from httpx_sse import aconnect_sse
from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine
from tests.conftest import SECRET, auth, make_settings, token
from tests.fakes.openai_server import FakeOpenAI, Scenario, text
from tests.support.proc import open_fds, rss_mb
from tests.support.processes import ParleyProcess, fake_openai_env, start_parley
from tests.support.sse import Event, collect
from tests.support.wait import until

from parley.app import create_app
from parley.config import Settings
from parley.store.tables import Message, Run

pytestmark = pytest.mark.slow

VANISHING = 500  # the number of clients that vanish mid-stream
WAVE = 100  # clients in flight at once (two cores)
PIECES = 40  # chunks in each reply
EVERY_MS = 25


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as server:
        yield server


@contextlib.asynccontextmanager
async def _parley(
    database_url: str, fake: FakeOpenAI, tmp_path: Path, **extra: str
) -> AsyncIterator[ParleyProcess]:
    env = fake_openai_env(database_url, fake.base_url, tmp_path, SECRET, **extra)
    process = await start_parley(env, tmp_path)
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
async def parley(sqlite_url: str, fake: FakeOpenAI, tmp_path: Path) -> AsyncIterator[ParleyProcess]:
    async with _parley(sqlite_url, fake, tmp_path) as process:
        yield process


def _reply(tag: str, pieces: int = PIECES, every_ms: float = EVERY_MS, pad: str = "") -> Scenario:
    return text(*(f"<{tag}{k}{pad}>" for k in range(pieces)), interval=every_ms / 1000)


def _whole(tag: str, pieces: int = PIECES, pad: str = "") -> str:
    return "".join(f"<{tag}{k}{pad}>" for k in range(pieces))


def _in_flight(fake: FakeOpenAI) -> int:
    """Upstream responses neither finished nor cut off: connections a run still holds."""
    return sum(1 for e in fake.exchanges if not (e.finished or e.cut_off))


async def _replies(database_url: str) -> list[Message]:
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            query = select(Message).where(Message.role == "assistant")
            return list((await conn.execute(query)).all())  # type: ignore[arg-type]
    finally:
        await engine.dispose()


def _statuses(replies: list[Any]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for reply in replies:
        counts[reply.status] = counts.get(reply.status, 0) + 1
    return counts


# a client on a raw socket ---------------------------------------------------------------------


def _request(
    method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
) -> bytes:
    payload = b"" if body is None else json.dumps(body).encode()
    lines = [
        f"{method} {path} HTTP/1.1",
        "Host: 127.0.0.1",
        f"Authorization: Bearer {token('alice')}",
        "Accept: text/event-stream",
        "Content-Type: application/json",
        f"Content-Length: {len(payload)}",
        *(f"{k}: {v}" for k, v in (headers or {}).items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


@dataclass
class RawStream:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    head: str

    @property
    def run_id(self) -> str:
        for line in self.head.split("\r\n"):
            name, _, value = line.partition(":")
            if name.lower() == "x-run-id":
                return value.strip()
        raise AssertionError(f"no X-Run-Id in {self.head!r}")

    def vanish(self, *, reset: bool) -> None:
        """Close abruptly: a RST (SO_LINGER 0) or a FIN, with unread data left behind."""
        if reset:
            sock = self.writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()


async def _open(port: int, method: str, path: str, body: Any = None, **headers: str) -> RawStream:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(_request(method, path, body, headers))
    head = (await reader.readuntil(b"\r\n\r\n")).decode()
    assert head.startswith("HTTP/1.1 200"), head
    return RawStream(reader, writer, head)


async def _vanish_after_first_content(
    port: int, method: str, path: str, body: Any, *, reset: bool
) -> str:
    stream = await _open(port, method, path, body)
    try:
        await stream.reader.readuntil(b"event: content")
        return stream.run_id
    finally:
        stream.vanish(reset=reset)


# 500 vanishing clients ------------------------------------------------------------------------


async def _vanish_twice(port: int, cid: str, *, reset: bool) -> None:
    """Start a run and vanish, then follow that run and vanish again, both mid-stream."""
    path = f"/api/conversations/{cid}/messages"
    run_id = await _vanish_after_first_content(port, "POST", path, {"content": "hi"}, reset=reset)
    path = f"/api/runs/{run_id}/events"
    await _vanish_after_first_content(port, "GET", path, None, reset=not reset)


async def _wave(http: httpx.AsyncClient, port: int, size: int) -> None:
    """``size`` clients start a run each and vanish, alternately with a RST and a FIN."""
    new = [http.post("/api/conversations", json={}) for _ in range(size)]
    ids = [response.json()["id"] for response in await asyncio.gather(*new)]
    await asyncio.gather(*(_vanish_twice(port, cid, reset=n % 2 == 0) for n, cid in enumerate(ids)))


async def _all_complete(database_url: str, expected: int, timeout: float) -> list[Any]:
    replies: list[Any] = []

    async def check() -> bool:
        nonlocal replies
        replies = await _replies(database_url)
        return len(replies) == expected and all(r.status != "streaming" for r in replies)

    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"not finished: {_statuses(replies)}"
        await asyncio.sleep(0.2)  # polling the database, bounded by the deadline
    return replies


async def _healthz_ms(http: httpx.AsyncClient) -> float:
    started = time.monotonic()
    response = await http.get("/healthz")
    assert response.status_code == 200
    return (time.monotonic() - started) * 1000


async def test_500_clients_that_vanish_mid_stream_cancel_nothing_and_leak_nothing(
    fake: FakeOpenAI, sqlite_url: str, tmp_path: Path
) -> None:
    # the hub forgets finished runs after 2 s, so what it retains by design is not counted
    async with _parley(sqlite_url, fake, tmp_path, PARLEY_RUN_TTL="2") as parley:
        await _vanishing_clients(parley, fake, sqlite_url)


async def _vanishing_clients(parley: ParleyProcess, fake: FakeOpenAI, sqlite_url: str) -> None:
    fake.default = _reply("v")
    whole = _whole("v")
    limits = httpx.Limits(max_connections=20)
    async with httpx.AsyncClient(
        base_url=parley.url, headers=auth("alice"), timeout=30, limits=limits
    ) as http:
        await _wave(http, parley.port, WAVE)
        await _all_complete(sqlite_url, WAVE, timeout=60)
        await until(lambda: _in_flight(fake) == 0, timeout=10)
        warm_rss, warm_fds = rss_mb(parley.process.pid), open_fds(parley.process.pid)

        slowest = 0.0
        for _ in range(WAVE, VANISHING, WAVE):
            wave = asyncio.create_task(_wave(http, parley.port, WAVE))
            while not (await asyncio.wait({wave}, timeout=0.1))[0]:
                slowest = max(slowest, await _healthz_ms(http))
            await wave
        replies = await _all_complete(sqlite_url, VANISHING, timeout=60)
        await until(lambda: _in_flight(fake) == 0, timeout=10)
        await http.get("/healthz")  # lets the hub forget the last finished runs
        # connections to the model stay pooled while idle, up to its keep-alive (4 s)
        pid = parley.process.pid
        with contextlib.suppress(TimeoutError):
            await until(lambda: open_fds(pid) <= warm_fds + 5, timeout=15, step=0.5)
        end_rss, end_fds = rss_mb(pid), open_fds(pid)

    assert _statuses(replies) == {"complete": VANISHING}
    assert all(r.text == whole for r in replies)
    assert len(fake.exchanges) == VANISHING and not any(e.cut_off for e in fake.exchanges)
    print(f"RSS {warm_rss:.1f} -> {end_rss:.1f} MiB, fds {warm_fds} -> {end_fds}, ", end="")
    print(f"slowest /healthz under load {slowest:.0f} ms")
    assert end_rss - warm_rss < 25, (warm_rss, end_rss)
    assert end_fds <= warm_fds + 5, (warm_fds, end_fds)
    assert slowest < 2500


# slow readers ---------------------------------------------------------------------------------

SLOW_READERS = 40  # sockets that never read, on one run
BIG_PIECES, PAD = 1500, "y" * 4000  # a 6 MB reply: beyond the 4 MB a kernel buffers per socket


async def _never_reading(port: int, method: str, path: str, body: Any = None) -> socket.socket:
    """A socket with a tiny receive window that sends its request and never reads a byte."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, ("127.0.0.1", port))
    await loop.sock_sendall(sock, _request(method, path, body))
    return sock


async def _run_ids(database_url: str, conversation_ids: list[str]) -> list[str]:
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            query = select(Run.id).where(Run.conversation_id.in_(conversation_ids))
            return list((await conn.execute(query)).scalars())
    finally:
        await engine.dispose()


@contextlib.asynccontextmanager
async def _in_process(settings: Settings) -> AsyncIterator[uvicorn.Server]:
    """parley under uvicorn in this event loop, so the test can see each connection's buffer."""
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), port=0, log_level="warning", lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    await until(lambda: server.started or task.done(), timeout=20)
    try:
        yield server
    finally:
        server.should_exit = True
        await task


def _buffered(server: uvicorn.Server) -> list[int]:
    """Bytes each open connection holds in user space, waiting for its client to read."""
    return [c.transport.get_write_buffer_size() for c in server.server_state.connections]


async def test_readers_that_never_read_hold_up_no_one_and_are_buffered_a_bounded_amount(
    fake: FakeOpenAI, sqlite_url: str, tmp_path: Path
) -> None:
    """41 clients that never read a 6 MB reply: the kernel takes 4 MB of it per socket, and the
    server holds at most the transport's high-water mark (64 KiB) beyond that, not the rest."""
    fake.default = _reply("s", BIG_PIECES, every_ms=1, pad=PAD)
    whole = _whole("s", BIG_PIECES, PAD)
    settings = make_settings(
        tmp_path,
        sqlite_url,
        provider="openai",
        model="fake-model",
        openai_base_url=fake.base_url,
        openai_api_key="sk-fake",
    )
    async with _in_process(settings) as server:
        port = server.servers[0].sockets[0].getsockname()[1]
        url = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=url, headers=auth("alice"), timeout=60) as http:
            cid = (await http.post("/api/conversations", json={})).json()["id"]
            path = f"/api/conversations/{cid}/messages"
            slow = [await _never_reading(port, "POST", path, {"content": "a long story"})]
            await until(lambda: len(fake.exchanges) == 1, timeout=20)
            (run_id,) = await _run_ids(sqlite_url, [cid])
            followers = [
                _never_reading(port, "GET", f"/api/runs/{run_id}/events")
                for _ in range(SLOW_READERS)
            ]
            slow += await asyncio.gather(*followers)

            fake.enqueue(_reply("quick"))
            cid = (await http.post("/api/conversations", json={})).json()["id"]
            async with asyncio.timeout(20):
                _, events = await collect(
                    http, "POST", f"/api/conversations/{cid}/messages", json_body={"content": "hi"}
                )
            quick = "".join(e.data["content"] for e in events if e.event == "content")
            assert quick == _whole("quick")
            assert (await _healthz_ms(http)) < 2500

            replies = await _all_complete(sqlite_url, 2, timeout=60)
            stuck = sorted(_buffered(server))[-len(slow) :]
            for sock in slow:
                sock.close()
            await until(lambda: len(server.server_state.connections) <= 1, timeout=20)

    assert sorted(len(r.text) for r in replies) == [len(_whole("quick")), len(whole)]
    assert _statuses(replies) == {"complete": 2}
    print(f"buffered per unread connection: {min(stuck)} to {max(stuck)} bytes")
    assert min(stuck) > 0, "the readers should be stuck with data the kernel would not take"
    assert max(stuck) < 256 * 1024


# reconnect storms -----------------------------------------------------------------------------

STORM_RUNS, STORM_CLIENTS = 4, 60
STORM_PIECES = 200


async def _stormy_reader(
    http: httpx.AsyncClient, run_id: str, seed: int
) -> tuple[list[Event], int]:
    """Read a few events, drop the connection, come back with ``Last-Event-ID``: until ``done``."""
    chooser = random.Random(seed)
    seen: list[Event] = []
    connections = 0
    while not seen or seen[-1].event != "done":
        connections += 1
        headers = {"Last-Event-ID": seen[-1].id} if seen else {}
        budget = chooser.randint(1, 12)
        url = f"/api/runs/{run_id}/events"
        async with aconnect_sse(http, "GET", url, headers=headers) as source:
            async for sse in source.aiter_sse():
                if sse.data and sse.data != "[DONE]":
                    seen.append(Event(id=sse.id, event=sse.event, data=json.loads(sse.data)))
                    budget -= 1
                if budget == 0 or sse.event == "done":
                    break  # leaving the block closes the connection with the stream unread
    return seen, connections


async def test_reconnect_storms_with_last_event_id_lose_and_repeat_nothing(
    parley: ParleyProcess, fake: FakeOpenAI
) -> None:
    fake.default = _reply("r", STORM_PIECES, every_ms=10)
    limits = httpx.Limits(max_connections=STORM_CLIENTS + 10)
    async with httpx.AsyncClient(
        base_url=parley.url, headers=auth("alice"), timeout=30, limits=limits
    ) as http:
        run_ids = []
        for _ in range(STORM_RUNS):
            cid = (await http.post("/api/conversations", json={})).json()["id"]
            path = f"/api/conversations/{cid}/messages"
            async with aconnect_sse(http, "POST", path, json={"content": "hi"}) as source:
                run_ids.append(source.response.headers["x-run-id"])  # and vanish
        storm = [
            _stormy_reader(http, run_ids[n % STORM_RUNS], seed=n) for n in range(STORM_CLIENTS)
        ]
        results = await asyncio.gather(*storm)
        whole_reads = [
            (await collect(http, "GET", f"/api/runs/{rid}/events"))[1] for rid in run_ids
        ]

    for n, (seen, _) in enumerate(results):
        reference = [e for e in whole_reads[n % STORM_RUNS] if e.data != "[DONE]"]
        assert [e.id for e in seen] == [e.id for e in reference], f"client {n}"
        assert seen == reference
        assert "".join(e.data["content"] for e in seen if e.event == "content") == _whole(
            "r", STORM_PIECES
        )
    reconnects = sum(connections for _, connections in results)
    print(f"{reconnects} connections by {STORM_CLIENTS} clients")
    assert reconnects > STORM_CLIENTS * 10
    assert not any(e.cut_off for e in fake.exchanges)
