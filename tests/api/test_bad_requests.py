"""Each door's message route answers fifteen kinds of bad request with the status, error code
and body its clients read (parley's shape; OpenAI's under /v1), and writes nothing."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from tests.conftest import Live, auth

from parley.api.deps import current_caller
from parley.auth import Principal

JSON = {"content-type": "application/json"}
DEEP = b"[" * 100_000 + b"]" * 100_000

CASES: list[tuple[str, bytes, dict[str, str], bool | None]] = [
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

NOT_JSON = "1: JSON decode error"
NOT_AN_OBJECT = "body: Input should be a valid dictionary or object to extract fields from"
UNPARSED = "There was an error parsing the body"
NO_TOKEN = "missing bearer token (Authorization: Bearer <JWT>)"
LONG_MODEL = "model: String should have at most 255 characters"
BAD_TEMPERATURE = "temperature: Input should be a valid number, unable to parse string as a number"
NO_CHAT_ID = "id (the chat id) is required"
NO_MODEL = "model: Field required"

# per case: the status and the message; the code follows from the status for parley's shape
PARLEY_CODES = {
    400: "ERR_VALIDATION",
    401: "ERR_UNAUTHENTICATED",
    404: "ERR_NOT_FOUND",
    422: "ERR_VALIDATION",
}
NATIVE: dict[str, tuple[int, str]] = {
    "not json": (422, NOT_JSON),
    "not json, no token": (422, NOT_JSON),
    "a text body": (422, NOT_AN_OBJECT),
    "no content type": (422, NOT_AN_OBJECT),
    "empty": (422, "body: Field required"),
    "a list": (422, NOT_AN_OBJECT),
    "unknown fields beside a bad one": (422, "attachments: Input should be a valid list"),
    "a bad temperature": (422, BAD_TEMPERATURE),
    "a long model": (422, LONG_MODEL),
    "not utf-8": (400, UNPARSED),
    "too deep": (400, UNPARSED),
    "no token": (401, NO_TOKEN),
    "no token, bad fields": (401, NO_TOKEN),
    "an empty message": (400, "the message is empty"),
    "another user's conversation": (404, "conversation not found"),
}
VERCEL = {
    **NATIVE,
    "unknown fields beside a bad one": (422, NO_CHAT_ID),
    "an empty message": (422, NO_CHAT_ID),
    "another user's conversation": (422, NO_CHAT_ID),
}
# OpenAI's shape: status, message, param, code
OPENAI: dict[str, tuple[int, str, str | None, str | None]] = {
    "not json": (400, NOT_JSON, "1", None),
    "not json, no token": (400, NOT_JSON, "1", None),
    "a text body": (400, NOT_AN_OBJECT, None, None),
    "no content type": (400, NOT_AN_OBJECT, None, None),
    "empty": (400, "body: Field required", None, None),
    "a list": (400, NOT_AN_OBJECT, None, None),
    "unknown fields beside a bad one": (400, NO_MODEL, "model", None),
    "a bad temperature": (400, NO_MODEL, "model", None),
    "a long model": (400, LONG_MODEL, "model", None),
    "not utf-8": (400, UNPARSED, None, None),
    "too deep": (400, UNPARSED, None, None),
    "no token": (401, NO_TOKEN, None, "invalid_api_key"),
    "no token, bad fields": (401, NO_TOKEN, None, "invalid_api_key"),
    "an empty message": (400, NO_MODEL, "model", None),
    "another user's conversation": (400, NO_MODEL, "model", None),
}

DOORS = {
    "native": "/api/conversations/{convo}/messages",
    "vercel": "/api/chat",
    "openai": "/v1/chat/completions",
}


def expected(door: str, name: str) -> tuple[int, str | None, dict[str, Any]]:
    """The status, the ``X-Error-Code`` header and the body ``door`` answers to case ``name``."""
    if door == "openai":
        status, message, param, code = OPENAI[name]
        kind = "invalid_request_error"
        return (
            status,
            None,
            {"error": {"message": message, "type": kind, "param": param, "code": code}},
        )
    status, message = (NATIVE if door == "native" else VERCEL)[name]
    code_ = PARLEY_CODES[status]
    return status, code_, {"success": False, "error": {"code": code_, "message": message}}


async def _ask(
    live: Live, path: str, body: bytes, headers: dict[str, str], who: bool | None
) -> tuple[int, str | None, Any]:
    if who is None:
        headers = {**headers, **auth("mallory")}
    elif who:
        headers = {**headers, **auth("alice")}
    async with httpx.AsyncClient(base_url=live.url, timeout=30) as http:
        response = await http.post(path, content=body, headers=headers)
    return response.status_code, response.headers.get("x-error-code"), response.json()


@pytest.mark.parametrize("door", list(DOORS))
@pytest.mark.parametrize(("name", "body", "headers", "who"), CASES, ids=[c[0] for c in CASES])
async def test_a_bad_request_gets_the_doors_error_and_writes_nothing(
    live: Live, door: str, name: str, body: bytes, headers: dict[str, str], who: bool | None
) -> None:
    async with live.client() as http:
        convo = (await http.post("/api/conversations", json={})).json()["id"]
    answered = await _ask(live, DOORS[door].format(convo=convo), body, headers, who)
    assert answered == expected(door, name)
    async with live.client() as http:
        listed = (await http.get("/api/conversations")).json()
        page = (await http.get(f"/api/conversations/{convo}")).json()
    assert [c["id"] for c in listed["items"]] == [convo]  # nothing was written
    assert page["messages"] == []


@pytest.mark.parametrize(
    ("documented", "model"),
    [
        ("/api/conversations/{conversation_id}/messages", "SendMessage"),
        ("/api/chat", "ChatRequest"),
        ("/v1/chat/completions", "CompletionRequest"),
    ],
)
async def test_the_document_names_each_doors_message_body(
    live: Live, documented: str, model: str
) -> None:
    async with live.client() as http:
        document = (await http.get("/openapi.json")).json()
    operation = document["paths"][documented]["post"]
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    assert schema["$ref"].endswith(f"/{model}")


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/api/conversations/{convo}/messages", {"content": " "}, 400),
        ("/api/chat", {"messages": []}, 422),
        ("/v1/chat/completions", {"model": "nope/x", "messages": [{"role": "user"}]}, 404),
    ],
)
async def test_the_message_routes_take_the_apps_dependency_overrides(
    live: Live, path: str, body: dict[str, Any], status: int
) -> None:
    """FastAPI's own routes serve the doors: an override of the caller reaches them (no 401)."""

    async def alice() -> Principal:
        return Principal("alice")

    async with live.client() as http:
        convo = (await http.post("/api/conversations", json={})).json()["id"]
    live.app.dependency_overrides[current_caller] = alice
    try:
        async with live.client(None) as http:
            response = await http.post(path.format(convo=convo), json=body)
    finally:
        live.app.dependency_overrides.clear()
    assert response.status_code == status, response.text
