"""Reading SSE streams in tests with httpx-sse (an EventSource-conformant parser)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx
from httpx_sse import aconnect_sse


@dataclass
class Event:
    id: str
    event: str
    data: Any


async def collect(
    http: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    json_body: Any = None,
    headers: dict[str, str] | None = None,
    stop_after: str | None = None,
) -> tuple[httpx.Response, list[Event]]:
    """Every event of a stream (``[DONE]`` as data ``"[DONE]"``), or up to ``stop_after``."""
    events: list[Event] = []
    async with aconnect_sse(
        http, method, url, json=json_body, headers=dict(headers or {})
    ) as source:
        response = source.response
        if response.status_code != 200:
            await response.aread()
            return response, events
        async for sse in source.aiter_sse():
            if not sse.data:
                continue  # a heartbeat after an id: line; EventSource does not dispatch these
            data = sse.data if sse.data == "[DONE]" else json.loads(sse.data)
            events.append(Event(id=sse.id, event=sse.event, data=data))
            if stop_after is not None and sse.event == stop_after:
                break
    return response, events


def kinds(events: list[Event]) -> list[str]:
    return [e.event if e.data != "[DONE]" else "[DONE]" for e in events]


def text(events: list[Event]) -> str:
    return "".join(e.data["content"] for e in events if e.event == "content")
