"""The bare relay: the least a correct streaming proxy must do, as the benchmarks' baseline.

``POST /relay`` with ``{"model": ...}`` opens a streaming chat completion upstream with httpx,
parses each chunk's JSON and re-encodes its text delta as an SSE event. No auth, no storage.

Run: ``python -m bench.relay UPSTREAM_BASE_URL PORT``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route


def build(upstream: str) -> Starlette:
    # No cap on connections (httpx's default is 100): a relay that queued the 101st stream
    # behind the first hundred would not be holding it, and its paced and memory rows would
    # measure a hundred streams whatever the level (as they did before 2026-12-02).
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=100)
    client = httpx.AsyncClient(base_url=upstream, timeout=60, limits=limits)

    async def relay(request: Request) -> StreamingResponse:
        body = await request.json()
        payload = {
            "model": body["model"],
            "stream": True,
            "messages": [{"role": "user", "content": "hi"}],
        }
        return StreamingResponse(_events(client, payload), media_type="text/event-stream")

    return Starlette(routes=[Route("/relay", relay, methods=["POST"])])


async def _events(client: httpx.AsyncClient, payload: dict[str, object]) -> AsyncIterator[bytes]:
    async with client.stream("POST", "/chat/completions", json=payload) as response:
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            for choice in json.loads(line[6:]).get("choices", []):
                content = choice.get("delta", {}).get("content")
                if content:
                    event = json.dumps({"type": "content", "content": content})
                    yield f"event: content\ndata: {event}\n\n".encode()
    yield b"data: [DONE]\n\n"


if __name__ == "__main__":
    uvicorn.run(build(sys.argv[1]), host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
