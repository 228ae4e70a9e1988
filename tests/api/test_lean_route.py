"""The message route served without FastAPI's machinery answers exactly as FastAPI's would."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from starlette.routing import Match, Route
from tests.conftest import Live, auth

from parley.api.routes import chat

JSON = {"content-type": "application/json"}
DEEP = b"[" * 100_000 + b"]" * 100_000

CASES: list[tuple[str, bytes, dict[str, str], bool]] = [
    ("not json", b"{not json", JSON, True),
    ("not json, no token", b"{not json", JSON, False),
    ("a text body", b'{"content": "hi"}', {"content-type": "text/plain"}, True),
    ("no content type", b'{"content": "hi"}', {}, True),
    ("empty", b"", JSON, True),
    ("a list", b"[]", JSON, True),
    ("an unknown field", b'{"content": "hi", "colour": 1}', JSON, True),
    ("a bad temperature", b'{"content": "hi", "temperature": "hot"}', JSON, True),
    ("a long model", b'{"content": "hi", "model": "' + b"m" * 300 + b'"}', JSON, True),
    ("not utf-8", b'{"content": "\xff\xfe"}', JSON, True),
    ("too deep", DEEP, JSON, True),
    ("no token", b'{"content": "hi"}', JSON, False),
    ("no token, bad fields", b'{"temperature": 9}', JSON, False),
    ("an empty message", b'{"content": "  "}', JSON, True),
    ("another user's conversation", b'{"content": "hi"}', JSON, None),
]


def _lean(live: Live) -> list[Any]:
    return [r for r in live.app.router.routes if isinstance(r, Route) and r in chat.lean_routes]


async def _ask(
    live: Live, convo: str, body: bytes, headers: dict[str, str], who: bool | None
) -> Any:
    if who is None:
        headers = {**headers, **auth("mallory")}
    elif who:
        headers = {**headers, **auth("alice")}
    async with httpx.AsyncClient(base_url=live.url, timeout=30) as http:
        response = await http.post(
            f"/api/conversations/{convo}/messages", content=body, headers=headers
        )
    error = response.json().get("error", {})
    return response.status_code, response.headers.get("x-error-code"), error.get("message")


@pytest.mark.parametrize(("name", "body", "headers", "who"), CASES, ids=[c[0] for c in CASES])
async def test_bad_requests_get_the_answer_fastapi_gives(
    live: Live, name: str, body: bytes, headers: dict[str, str], who: bool | None
) -> None:
    async with live.client() as http:
        convo = (await http.post("/api/conversations", json={})).json()["id"]
    lean = _lean(live)
    assert len(lean) == 1  # installed, ahead of FastAPI's route
    fast = await _ask(live, convo, body, headers, who)
    for route in lean:
        live.app.router.routes.remove(route)
    try:
        slow = await _ask(live, convo, body, headers, who)
    finally:
        live.app.router.routes[:0] = lean
    assert fast == slow
    assert fast[0] in (400, 401, 404, 422)
    async with live.client() as http:
        page = (await http.get(f"/api/conversations/{convo}")).json()
    assert page["messages"] == []  # nothing was written either way


async def test_the_lean_route_comes_first_and_the_document_keeps_the_route(live: Live) -> None:
    scope = {"type": "http", "method": "POST", "path": "/api/conversations/c1/messages"}
    first = next(r for r in live.app.router.routes if r.matches(scope)[0] is Match.FULL)
    assert first in chat.lean_routes
    async with live.client() as http:
        document = (await http.get("/openapi.json")).json()
    operation = document["paths"]["/api/conversations/{conversation_id}/messages"]["post"]
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    assert schema["$ref"].endswith("/SendMessage")
