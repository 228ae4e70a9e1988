"""Paced streams at rising concurrency: how many a server holds with steady gaps and no error.

Every stream is one reply of chunks sent one every ``every_ms`` by the fake upstream. The client
is deliberately cheap (a raw socket per stream, counting ``event: content`` in whatever bytes
arrive, no line parsing), so that at hundreds of streams it is the servers that are measured and
not the client. A gap is the time between two consecutive text events of one stream as the
client receives them; events that arrive in the same read have a gap of 0.

Memory per open stream is the servers' resident memory (the sum over their processes) with every
stream of a level open, minus the resident memory before the first level, divided by the
number of streams.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from bench.procs import Server, rss_bytes
from bench.streams import model

MARK = b"event: content"
END = b"[DONE]"


@dataclass
class _Watch:
    """What one stream's client saw."""

    events: int = 0
    arrivals: list[float] = field(default_factory=list)
    error: str | None = None


async def _request_bytes(http: httpx.AsyncClient, server: Server, name: str) -> bytes:
    """The raw HTTP request of one streamed reply (for parley, into a new conversation)."""
    if server.kind == "relay":
        path, body = "/relay", {"model": name}
    else:
        created = await http.post(
            f"{server.url}/api/conversations", json={}, headers=server.headers
        )
        created.raise_for_status()
        path = f"/api/conversations/{created.json()['id']}/messages"
        body = {"content": "hi", "model": f"openai/{name}"}
    payload = json.dumps(body).encode()
    head = [f"POST {path} HTTP/1.1", f"Host: {urlsplit(server.url).netloc}"]
    head += [f"{k}: {v}" for k, v in server.headers.items()]
    head += ["Content-Type: application/json", f"Content-Length: {len(payload)}", "", ""]
    return "\r\n".join(head).encode() + payload


async def _watch(
    server: Server, request: bytes, expected: int, deadline: float, watch: _Watch | None = None
) -> _Watch:
    watch = watch or _Watch()
    parts = urlsplit(server.url)
    try:
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    except OSError as exc:
        watch.error = f"connect: {exc!r}"
        return watch
    try:
        writer.write(request)
        await writer.drain()
        await _read_events(reader, watch, deadline)
    except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
        watch.error = repr(exc)
    finally:
        writer.close()
    if watch.error is None and watch.events != expected:
        watch.error = f"got {watch.events} of {expected} events"
    return watch


async def _read_events(reader: asyncio.StreamReader, watch: _Watch, deadline: float) -> None:
    tail = b""
    first = True
    while True:
        data = await asyncio.wait_for(reader.read(65536), max(0.1, deadline - time.monotonic()))
        if not data:
            return
        if first and not data.startswith(b"HTTP/1.1 200"):
            watch.error = data[:80].decode(errors="replace")
            return
        first = False
        now = time.monotonic()
        window = tail + data
        count = window.count(MARK)
        watch.events += count
        watch.arrivals.extend([now] * count)
        if END in window:
            return
        tail = window[-(len(MARK) - 1) :]


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def level(
    server: Server, streams: int, *, chunks: int, every_ms: float, ramp_s: float, base_rss: int
) -> dict[str, Any]:
    """``streams`` paced replies started evenly over ``ramp_s`` seconds; gaps, errors, memory.

    ``p99_gap_ms`` counts the gaps that end while every stream is open (after the ramp, before
    the first stream ends): what the server sustains at that concurrency. ``p99_gap_all_ms``
    also counts the ramp, when the server is also accepting and starting a new reply every
    ``ramp_s / streams`` seconds.
    """
    name = model(chunks, every_ms)
    limits = httpx.Limits(max_connections=50)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        requests = await asyncio.gather(
            *[_request_bytes(http, server, name) for _ in range(streams)]
        )
    duration = chunks * every_ms / 1000
    begin = time.monotonic()
    deadline = begin + ramp_s + duration * 3 + 30

    async def start(i: int, request: bytes) -> _Watch:
        await asyncio.sleep(ramp_s * i / streams)
        return await _watch(server, request, chunks, deadline)

    pids = server.pids  # /proc is scanned for children now, not while streams are measured
    tasks = [asyncio.create_task(start(i, r)) for i, r in enumerate(requests)]
    steady = (begin + ramp_s + 0.2, begin + max(duration, ramp_s + 0.4))
    await asyncio.sleep(max(0.0, (steady[0] + steady[1]) / 2 - time.monotonic()))
    peak = await asyncio.to_thread(rss_bytes, pids)
    watches = await asyncio.gather(*tasks)
    pairs = [pair for w in watches for pair in zip(w.arrivals, w.arrivals[1:], strict=False)]
    gaps = [b - a for a, b in pairs if steady[0] <= b <= steady[1]]
    errors = [w.error for w in watches if w.error]
    return {
        "streams": streams,
        "p50_gap_ms": _percentile(gaps, 0.5) * 1000,
        "p99_gap_ms": _percentile(gaps, 0.99) * 1000,
        "p99_gap_all_ms": _percentile([b - a for a, b in pairs], 0.99) * 1000,
        "max_gap_ms": max(gaps, default=0.0) * 1000,
        "errors": len(errors),
        "error_kinds": sorted(set(errors))[:3],
        "rss_per_stream_kib": max(0, peak - base_rss) / streams / 1024,
    }


async def ladder(
    server: Server,
    levels: tuple[int, ...],
    *,
    chunks: int,
    every_ms: float = 50,
    ramp_s: float = 2.0,
    max_gap_ms: float = 100,
) -> dict[str, Any]:
    """Rising concurrency until the p99 gap passes ``max_gap_ms`` or a stream fails."""
    await level(server, 2, chunks=5, every_ms=every_ms, ramp_s=0, base_rss=0)  # warm up
    base = rss_bytes(server.pids)
    results = []
    held = 0
    for streams in levels:
        result = await level(
            server, streams, chunks=chunks, every_ms=every_ms, ramp_s=ramp_s, base_rss=base
        )
        results.append(result)
        if result["errors"] or result["p99_gap_ms"] > max_gap_ms:
            break
        held = streams
    return {"levels": results, "held": held, "base_rss_mib": base / 2**20}


async def idle_memory(
    server: Server, streams: int, *, ramp_s: float = 2.0, hold_s: float = 20.0
) -> dict[str, Any]:
    """Resident memory per open, nearly idle stream (one chunk a second).

    ``streams`` streams are opened over ``ramp_s`` seconds, then as many again, all staying
    open; memory is read once each group is open. The growth from the first reading to the
    second, divided by ``streams``, is what one more open stream costs
    (``kib_per_stream``): what a server sets up once, however many streams it serves (a
    database connection pool growing to its size, caches, threads), is paid by the first
    group. ``kib_per_stream_first`` is the first group's growth over the idle server, divided
    by ``streams``: that one-time cost included.
    """
    await level(server, 2, chunks=3, every_ms=200, ramp_s=0, base_rss=0)  # warm up
    pids = server.pids
    base = rss_bytes(pids)
    chunks = int(2 * ramp_s + hold_s)  # the first group is still open when the second is read
    name = model(chunks, 1000)
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=50)) as http:
        requests = await asyncio.gather(
            *[_request_bytes(http, server, name) for _ in range(2 * streams)]
        )
    deadline = time.monotonic() + 2 * ramp_s + chunks * 3 + 30

    watches = [_Watch() for _ in requests]

    async def start(i: int) -> _Watch:
        await asyncio.sleep(ramp_s * (i % streams) / streams)
        return await _watch(server, requests[i], chunks, deadline, watches[i])

    async def all_open(group: list[_Watch]) -> int:
        """Memory once every stream of the group has had its first event (or failed)."""
        while any(w.events == 0 and w.error is None for w in group):  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        return await asyncio.to_thread(rss_bytes, pids)

    tasks = [asyncio.create_task(start(i)) for i in range(streams)]
    one = await all_open(watches[:streams])
    tasks += [asyncio.create_task(start(i)) for i in range(streams, 2 * streams)]
    two = await all_open(watches)
    overlapped = all(w.events < chunks for w in watches[:streams])
    await asyncio.gather(*tasks)
    return {
        "streams": streams,
        "kib_per_stream": max(0, two - one) / streams / 1024,
        "kib_per_stream_first": max(0, one - base) / streams / 1024,
        "errors": sum(1 for w in watches if w.error),
        "overlapped": overlapped,
        "base_rss_mib": base / 2**20,
    }
