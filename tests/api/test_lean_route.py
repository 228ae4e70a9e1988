"""The doors' message routes served without FastAPI's machinery answer exactly as FastAPI's would."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from starlette.routing import Match, Route
from tests.conftest import Live, auth

from parley.api.routes import chat, openai_compat, vercel

JSON = {"content-type": "application/json"}
DEEP = b"[" * 100_000 + b"]" * 100_000

CASES: list[tuple[str, bytes, dict[str, str], bool]] = [
    ("not json", b"{not json", JSON, True),
    ("not json, no token", b"{not json", JSON, False),
    ("a text body", b'{"content": "hi"}', {"content-type": "text/plain"}, True),
    ("no content type", b'{"content": "hi"}', {}, True),
    ("empty", b"", JSON, True),
    ("a list", b"[]", JSON, True),
    (
        "unknown fields beside a bad one",
        b'{"content": "hi", "colour": 1, "attachments": "x"}',
        JSON,
        True,
    ),
    ("a bad temperature", b'{"content": "hi", "temperature": "hot"}', JSON, True),
    ("a long model", b'{"content": "hi", "model": "' + b"m" * 300 + b'"}', JSON, True),
    ("not utf-8", b'{"content": "\xff\xfe"}', JSON, True),
    ("too deep", DEEP, JSON, True),
    ("no token", b'{"content": "hi"}', JSON, False),
    ("no token, bad fields", b'{"temperature": 9}', JSON, False),
    ("an empty message", b'{"content": "  "}', JSON, True),
    ("another user's conversation", b'{"content": "hi"}', JSON, None),
]


DOORS = {
    "native": (chat, "/api/conversations/{convo}/messages"),
    "vercel": (vercel, "/api/chat"),
    "openai": (openai_compat, "/v1/chat/completions"),
}
LEAN = [route for module, _ in DOORS.values() for route in module.lean_routes]


def _lean(live: Live) -> list[Any]:
    return [r for r in live.app.router.routes if isinstance(r, Route) and r in LEAN]


async def _ask(
    live: Live, path: str, body: bytes, headers: dict[str, str], who: bool | None
) -> Any:
    if who is None:
        headers = {**headers, **auth("mallory")}
    elif who:
        headers = {**headers, **auth("alice")}
    async with httpx.AsyncClient(base_url=live.url, timeout=30) as http:
        response = await http.post(path, content=body, headers=headers)
    return response.status_code, response.headers.get("x-error-code"), response.json()


@pytest.mark.parametrize("door", list(DOORS))
@pytest.mark.parametrize(("name", "body", "headers", "who"), CASES, ids=[c[0] for c in CASES])
async def test_bad_requests_get_the_answer_fastapi_gives(
    live: Live, door: str, name: str, body: bytes, headers: dict[str, str], who: bool | None
) -> None:
    """The same status, error code and error body (parley's shape, OpenAI's under /v1) from
    the lean route and from FastAPI's own, and nothing written by either."""
    async with live.client() as http:
        convo = (await http.post("/api/conversations", json={})).json()["id"]
    path = DOORS[door][1].format(convo=convo)
    lean = _lean(live)
    assert len(lean) == len(DOORS)  # installed, ahead of FastAPI's routes
    fast = await _ask(live, path, body, headers, who)
    for route in lean:
        live.app.router.routes.remove(route)
    try:
        slow = await _ask(live, path, body, headers, who)
    finally:
        live.app.router.routes[:0] = lean
    assert fast == slow
    assert fast[0] in (400, 401, 404, 422)
    async with live.client() as http:
        listed = (await http.get("/api/conversations")).json()
        page = (await http.get(f"/api/conversations/{convo}")).json()
    assert [c["id"] for c in listed["items"]] == [convo]  # nothing was written either way
    assert page["messages"] == []


@pytest.mark.parametrize(
    ("door", "documented", "model"),
    [
        ("native", "/api/conversations/{conversation_id}/messages", "SendMessage"),
        ("vercel", "/api/chat", "ChatRequest"),
        ("openai", "/v1/chat/completions", "CompletionRequest"),
    ],
)
async def test_the_lean_route_comes_first_and_the_document_keeps_the_route(
    live: Live, door: str, documented: str, model: str
) -> None:
    module, path = DOORS[door]
    scope = {"type": "http", "method": "POST", "path": path.format(convo="c1")}
    first = next(r for r in live.app.router.routes if r.matches(scope)[0] is Match.FULL)
    assert first in module.lean_routes
    async with live.client() as http:
        document = (await http.get("/openapi.json")).json()
    operation = document["paths"][documented]["post"]
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    assert schema["$ref"].endswith(f"/{model}")
