"""Streaming measurements against a :class:`bench.procs.Server`: first token, rate, CPU, cancel."""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from dataclasses import dataclass
from typing import Any

import httpx

from bench.procs import Server, cpu_seconds


@dataclass
class Stream:
    ttft: float
    events: int
    run_id: str | None
    left_at: float = 0.0


def model(chunks: int, every_ms: float = 0) -> str:
    return f"bench-{chunks}-{every_ms:g}"


async def _request(
    http: httpx.AsyncClient, server: Server, name: str, convo: str | None = None
) -> tuple[str, dict[str, object]]:
    """The URL and body of one streamed reply; for parley, in a fresh conversation unless
    ``convo`` is given (then the reply continues it: its history is sent to the model)."""
    if server.kind == "relay":
        return f"{server.url}/relay", {"model": name}
    if server.kind == "upstream":
        body = {"model": name, "stream": True, "messages": []}
        return f"{server.url}/v1/chat/completions", body
    if convo is None:
        created = await http.post(
            f"{server.url}/api/conversations", json={}, headers=server.headers
        )
        convo = created.json()["id"]
    return f"{server.url}/api/conversations/{convo}/messages", {
        "content": "hi",
        "model": f"openai/{name}",
    }


async def stream(
    http: httpx.AsyncClient,
    server: Server,
    name: str,
    stop_after: int = 0,
    convo: str | None = None,
) -> Stream:
    """One streamed reply, counting text events; ``stop_after`` events, then leave (0: read all)."""
    url, body = await _request(http, server, name, convo)
    result = Stream(ttft=0.0, events=0, run_id=None)
    started = time.perf_counter()
    async with http.stream("POST", url, json=body, headers=server.headers) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if line.startswith('data: {"type":"start"'):
                result.run_id = json.loads(line[6:])["run_id"]
            elif _is_text(line, server):
                result.events += 1
                result.ttft = result.ttft or time.perf_counter() - started
                if stop_after and result.events >= stop_after:
                    result.left_at = time.monotonic()
                    break
    return result


def _is_text(line: str, server: Server) -> bool:
    if server.kind == "upstream":
        return line.startswith("data: ") and '"content": "' in line and '"role"' not in line
    return line.startswith("event: content")


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {"p50": statistics.median(ordered), "p99": p99, "n": len(ordered)}


async def first_token_beside(
    server: Server,
    upstream: Server,
    requests: int,
    chunks: int = 20,
    pause: float = 0.02,
    convo: str | None = None,
) -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
    """Time to the first text event (seconds), one stream at a time, of ``server`` and of the
    upstream alone, their requests taken in turn: what the server adds is the difference,
    measured under the same conditions. Each request opens a fresh connection: on a reused
    loopback connection httpx's request waits about 40 ms (Nagle and delayed ACK), which would
    hide what the servers add. Each request starts ``pause`` seconds after the previous one
    ended, so that neither is timed while the other is still finishing its last reply (parley
    writes it to the database). The third result is the percentiles of the paired differences
    (each server request less the upstream request just before it): what the server adds, less
    moved by the machine's speed drifting during the scenario than a difference of medians.

    With ``convo`` (parley only, :func:`conversation`), every request continues that
    conversation: each reply reads the branch and sends it to the model, and the branch grows
    by two messages a request."""
    fresh = httpx.Limits(max_keepalive_connections=0)
    times: dict[str, list[float]] = {"server": [], "upstream": []}
    async with httpx.AsyncClient(timeout=30, limits=fresh) as http:
        for target in (server, upstream):  # warm up
            await stream(http, target, model(chunks), convo=convo if target is server else None)
        for _ in range(requests):
            await asyncio.sleep(pause)
            times["upstream"].append((await stream(http, upstream, model(chunks))).ttft)
            await asyncio.sleep(pause)
            reply = await stream(http, server, model(chunks), convo=convo)
            times["server"].append(reply.ttft)
    paired = [a - b for a, b in zip(times["server"], times["upstream"], strict=True)]
    return percentiles(times["server"]), percentiles(times["upstream"]), percentiles(paired)


async def conversation(server: Server, history: int, chunks: int = 20) -> str:
    """A parley conversation of ``history`` messages (user and assistant in turn), made by
    replies."""
    async with httpx.AsyncClient(timeout=30) as http:
        url = f"{server.url}/api/conversations"
        convo: str = (await http.post(url, json={}, headers=server.headers)).json()["id"]
        for _ in range(history // 2):
            await stream(http, server, model(chunks), convo=convo)
    return convo


async def branch_length(server: Server, convo: str) -> int:
    """How many messages the conversation's active branch holds (up to 500)."""
    async with httpx.AsyncClient(timeout=30) as http:
        url = f"{server.url}/api/conversations/{convo}?limit=500"
        return len((await http.get(url, headers=server.headers)).json()["messages"])


async def throughput(server: Server, chunks: int, concurrency: int = 1) -> dict[str, Any]:
    """Text events relayed per second and server CPU microseconds per event."""
    async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=None)) as http:
        await stream(http, server, model(50))  # warm up
        cpu, started = cpu_seconds(server.pids), time.perf_counter()
        work = [stream(http, server, model(chunks)) for _ in range(concurrency)]
        results = await asyncio.gather(*work, return_exceptions=True)
        wall, cpu = time.perf_counter() - started, cpu_seconds(server.pids) - cpu
    events = sum(r.events for r in results if isinstance(r, Stream))
    errors = sorted({repr(r)[:200] for r in results if not isinstance(r, Stream)})
    return {
        "events": events,
        "errors": len([r for r in results if not isinstance(r, Stream)]),
        "error_kinds": errors,
        "seconds": wall,
        "events_per_s": events / wall,
        "cpu_us_per_event": cpu * 1e6 / max(events, 1),
    }


async def cancel_latency(server: Server, upstream: Server, tries: int) -> dict[str, float]:
    """Seconds from the cancel (parley) or client disconnect (relay) to the upstream's close."""
    delays = []
    async with httpx.AsyncClient(timeout=30) as http:
        for _ in range(tries):
            reply = await stream(http, server, model(0, 5), stop_after=5)
            asked = reply.left_at
            if server.kind == "parley":
                asked = time.monotonic()
                url = f"{server.url}/api/runs/{reply.run_id}/cancel"
                (await http.post(url, headers=server.headers)).raise_for_status()
            delays.append(await _closed_after(http, upstream, asked))
    return percentiles(delays)


async def _closed_after(http: httpx.AsyncClient, upstream: Server, asked: float) -> float:
    """Poll the upstream until it saw a client go away after ``asked``; give up at 10 s."""
    while time.monotonic() - asked < 10:
        stats = (await http.get(f"{upstream.url}/stats")).json()
        if stats["last_cut_off_at"] >= asked:
            return float(stats["last_cut_off_at"]) - asked
        await asyncio.sleep(0.005)
    return float("inf")
