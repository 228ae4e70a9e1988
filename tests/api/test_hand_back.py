"""A streamed response is played by the edge once the routing has returned, so an open stream
holds none of the request's routing objects (bench/RESULTS.md: about 10 KiB of every open stream)."""

from __future__ import annotations

import gc
from typing import Any

import pytest
from starlette.requests import Request
from tests.conftest import Live
from tests.support.sse import collect, text

from parley.providers.scripted import ScriptedProvider


def _alive(kind: type[Any], path: str | None = None) -> int:
    gc.collect()
    found = [o for o in gc.get_objects() if isinstance(o, kind)]
    if path is not None:
        found = [o for o in found if o.scope.get("path") == path]
    return len(found)


async def test_an_open_stream_holds_no_request_objects_of_the_routing(
    live: Live, scripted: ScriptedProvider
) -> None:
    scripted.enqueue([{"text": "first "}, {"wait": "go"}, {"text": "last"}])
    async with live.client() as http:
        cid = (await http.post("/api/conversations", json={})).json()["id"]
        path = f"/api/conversations/{cid}/messages"
        body = {"content": "hi"}
        async with http.stream("POST", path, json=body) as response:
            lines = response.aiter_lines()
            async for line in lines:
                if line.startswith("event: content"):
                    break
            held = _alive(Request, path)
            scripted.release("go")
            rest = [line async for line in lines]

        assert response.headers["x-request-id"]  # the edge's headers still reach a stream
        assert response.headers["x-content-type-options"] == "nosniff"
    assert held == 0, "the routing's request objects are held while the stream is open"
    assert any('"last"' in line for line in rest)
    assert rest[-2:] == ["data: [DONE]", ""]


@pytest.mark.parametrize("settings_overrides", [{"cors_origins": ["https://app.example"]}])
async def test_a_stream_played_by_the_edge_keeps_the_cors_headers(
    live: Live, scripted: ScriptedProvider
) -> None:
    """The stream writes through the ``send`` it was given, with every wrapper inside the edge."""
    scripted.enqueue([{"text": "hello"}])
    async with live.client() as http:
        http.headers["Origin"] = "https://app.example"
        cid = (await http.post("/api/conversations", json={})).json()["id"]
        response, events = await collect(
            http, "POST", f"/api/conversations/{cid}/messages", json_body={"content": "hi"}
        )
    assert response.headers["access-control-allow-origin"] == "https://app.example"
    assert text(events) == "hello"
