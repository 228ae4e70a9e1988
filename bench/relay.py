"""The bare relay: the least a correct streaming proxy must do, as the benchmarks' baseline.

``POST /relay`` with ``{"model": ...}`` opens a streaming chat completion upstream with httpx,
parses each chunk's JSON and re-encodes its text delta as an SSE event. No auth, no storage.
This is the baseline every target is a ratio to (the issue's own figures for a bare relay were
measured so).

With ``--client aiohttp`` the same relay asks the upstream with aiohttp, the client parley's
OpenAI provider uses: a second reference, reported beside the first, which tells what parley
gains from its HTTP client apart from what its own layers cost (bench/README.md).

Run: ``python -m bench.relay UPSTREAM_BASE_URL PORT [--client httpx|aiohttp]``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import AsyncIterator

import aiohttp
import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route


def build(upstream: str, client: str = "httpx") -> Starlette:
    # No cap on connections (httpx's default is 100): a relay that queued the 101st stream
    # behind the first hundred would not be holding it, and its paced and memory rows would
    # measure a hundred streams whatever the level (as they did before 2026-12-02).
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=100)
    http = httpx.AsyncClient(base_url=upstream, timeout=60, limits=limits)
    sessions: list[aiohttp.ClientSession] = []  # made in the server's loop, on first use

    async def relay(request: Request) -> StreamingResponse:
        body = await request.json()
        payload = {
            "model": body["model"],
            "stream": True,
            "messages": [{"role": "user", "content": "hi"}],
        }
        if client == "aiohttp":
            if not sessions:
                sessions.append(_session())
            events = _events_aiohttp(sessions[0], f"{upstream}/chat/completions", payload)
        else:
            events = _events(http, payload)
        return StreamingResponse(events, media_type="text/event-stream")

    return Starlette(routes=[Route("/relay", relay, methods=["POST"])])


async def _events(client: httpx.AsyncClient, payload: dict[str, object]) -> AsyncIterator[bytes]:
    async with client.stream("POST", "/chat/completions", json=payload) as response:
        async for line in response.aiter_lines():
            for event in _relayed(line):
                yield event
    yield b"data: [DONE]\n\n"


def _relayed(line: str) -> list[bytes]:
    """One upstream SSE line's text deltas, each re-encoded as an ``event: content`` event."""
    if not line.startswith("data: ") or line == "data: [DONE]":
        return []
    events = []
    for choice in json.loads(line[6:]).get("choices", []):
        content = choice.get("delta", {}).get("content")
        if content:
            event = json.dumps({"type": "content", "content": content})
            events.append(f"event: content\ndata: {event}\n\n".encode())
    return events


def _session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0),
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=60, sock_read=60),
    )


async def _events_aiohttp(
    session: aiohttp.ClientSession, url: str, payload: dict[str, object]
) -> AsyncIterator[bytes]:
    async with session.post(url, json=payload) as response:
        async for raw in response.content:  # lines
            for event in _relayed(raw.decode().rstrip("\r\n")):
                yield event
    yield b"data: [DONE]\n\n"


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("upstream")
    parser.add_argument("port", type=int)
    parser.add_argument("--client", choices=("httpx", "aiohttp"), default="httpx")
    args = parser.parse_args()
    app = build(args.upstream, args.client)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")
