"""What an open stream keeps of its request: the doors' parsed bodies are let go once the reply
starts (a long conversation's history is the bulk of a request), and dependencies keep the
lifetimes FastAPI gives them. The edge's and CORS headers reach a stream."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from pydantic import BaseModel
from tests.conftest import Live
from tests.support.sse import collect, text

from parley.api.deps import Services, get_services
from parley.api.routes.openai_compat import CompletionRequest
from parley.api.routes.vercel import ChatRequest
from parley.api.schemas import SendMessage
from parley.providers.scripted import ScriptedProvider

USER_TEXT = [{"id": "m1", "role": "user", "parts": [{"type": "text", "text": "hi"}]}]
DOORS: list[tuple[str, dict[str, Any], type[BaseModel]]] = [
    ("/api/conversations/{convo}/messages", {"content": "hi"}, SendMessage),
    ("/api/chat", {"id": "chat-1", "messages": USER_TEXT}, ChatRequest),
    (
        "/v1/chat/completions",
        {"model": "scripted/x", "stream": True, "messages": [{"role": "user", "content": "hi"}]},
        CompletionRequest,
    ),
]


def _alive(kind: type[Any]) -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, kind))


@pytest.mark.parametrize(("path", "body", "model"), DOORS, ids=["native", "vercel", "openai"])
async def test_an_open_stream_holds_no_parsed_request_body(
    live: Live, scripted: ScriptedProvider, path: str, body: dict[str, Any], model: type[Any]
) -> None:
    scripted.enqueue([{"text": "first "}, {"wait": "go"}, {"text": "last"}])
    async with live.client() as http:
        convo = (await http.post("/api/conversations", json={})).json()["id"]
        async with http.stream("POST", path.format(convo=convo), json=body) as response:
            lines = response.aiter_lines()
            with anyio.fail_after(10):
                async for line in lines:
                    if "first" in line:
                        break
            held = _alive(model)
            scripted.release("go")
            rest = [line async for line in lines]
        assert response.headers["x-request-id"]  # the edge's headers reach a stream
        assert response.headers["x-content-type-options"] == "nosniff"
    assert response.status_code == 200
    assert held == 0, f"an open stream holds its {model.__name__}"
    assert any("last" in line for line in rest)


async def test_a_dependency_with_yield_is_closed_after_the_stream_ends(
    live: Live, scripted: ScriptedProvider
) -> None:
    """FastAPI's lifetime for a dependency with ``yield``: open for the whole response."""
    closed = anyio.Event()

    async def services() -> AsyncIterator[Services]:
        try:
            yield live.services
        finally:
            closed.set()

    scripted.enqueue([{"text": "first "}, {"wait": "go"}, {"text": "last"}])
    async with live.client() as http:
        convo = (await http.post("/api/conversations", json={})).json()["id"]
        live.app.dependency_overrides[get_services] = services
        try:
            path = f"/api/conversations/{convo}/messages"
            async with http.stream("POST", path, json={"content": "hi"}) as response:
                lines = response.aiter_lines()
                with anyio.fail_after(10):
                    async for line in lines:
                        if "first" in line:
                            break
                open_while_streaming = not closed.is_set()
                scripted.release("go")
                rest = [line async for line in lines]
            with anyio.fail_after(10):
                await closed.wait()
        finally:
            live.app.dependency_overrides.clear()
    assert open_while_streaming, "the dependency was closed before the stream ended"
    assert rest[-2:] == ["data: [DONE]", ""]


@pytest.mark.parametrize("settings_overrides", [{"cors_origins": ["https://app.example"]}])
async def test_a_stream_keeps_the_cors_headers(live: Live, scripted: ScriptedProvider) -> None:
    scripted.enqueue([{"text": "hello"}])
    async with live.client() as http:
        http.headers["Origin"] = "https://app.example"
        cid = (await http.post("/api/conversations", json={})).json()["id"]
        response, events = await collect(
            http, "POST", f"/api/conversations/{cid}/messages", json_body={"content": "hi"}
        )
    assert response.headers["access-control-allow-origin"] == "https://app.example"
    assert text(events) == "hello"
