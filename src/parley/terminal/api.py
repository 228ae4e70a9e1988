"""The native API as ``parley chat`` uses it: a synchronous client with one bearer token, its
error, and the JSON shapes it reads (the fields the terminal shows, no more)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NotRequired, TypedDict

import httpx
from httpx_sse import EventSource, connect_sse

from parley.auth import issue_token
from parley.config import Settings, ensure_jwt_secret


class ErrorBody(TypedDict):
    code: str
    message: str


class TokensUsed(TypedDict):
    prompt: int
    completion: int
    total: int


class Part(TypedDict):
    type: str
    text: NotRequired[str]


class Message(TypedDict):
    id: str
    role: str
    parts: list[Part]
    status: str
    error: NotRequired[ErrorBody]


class Conversation(TypedDict):
    id: str
    title: str | None
    updated_at: str | None
    active_run_id: NotRequired[str | None]
    messages: NotRequired[list[Message]]


class Page(TypedDict):
    items: list[Conversation]


class Event(TypedDict, total=False):
    """The ``data`` of a native SSE event: each kind has some of these fields."""

    run_id: str
    content: str
    tool_call_id: str
    tool_name: str
    args: dict[str, Any]
    result: Any
    error: Any  # a tool_error's text; an error event's ErrorBody
    message: str
    approved: bool
    elicitation_id: str
    requested_schema: dict[str, Any]
    finish_reason: str
    tokensUsed: TokensUsed


class ApiError(Exception):
    """parley answered with an error (its ``{"error": {code, message}}`` shape)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def resolve_token(user: str) -> str:
    """``PARLEY_TOKEN`` when set, else a token for ``user`` signed with the local secret."""
    token = os.environ.get("PARLEY_TOKEN", "").strip()
    if token:
        return token
    return issue_token(ensure_jwt_secret(Settings()), user)


def _raise_for(response: httpx.Response) -> None:
    if response.is_success:
        return
    response.read()
    try:
        error = response.json().get("error") or {}
    except ValueError:
        error = {}
    message = error.get("message") or response.reason_phrase or "request failed"
    raise ApiError(response.status_code, error.get("code", f"HTTP_{response.status_code}"), message)


class ParleyClient:
    """The native API, synchronously, with one bearer token."""

    def __init__(self, url: str, token: str) -> None:
        self.http = httpx.Client(
            base_url=url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}"},
            timeout=httpx.Timeout(30.0, read=None),
        )

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = self.http.request(method, path, json=body)
        _raise_for(response)
        return None if response.status_code == 204 else response.json()

    def conversation(self, conversation_id: str, limit: int) -> Conversation:
        found: Conversation = self.call(
            "GET", f"/api/conversations/{conversation_id}?limit={limit}"
        )
        return found

    def conversations(self, limit: int) -> Page:
        page: Page = self.call("GET", f"/api/conversations?limit={limit}")
        return page

    @contextmanager
    def stream(
        self, method: str, path: str, body: dict[str, Any] | None = None, last_id: str | None = None
    ) -> Iterator[EventSource]:
        headers = {"Accept": "text/event-stream"}
        if last_id:
            headers["Last-Event-ID"] = last_id
        with connect_sse(self.http, method, path, json=body, headers=headers) as source:
            _raise_for(source.response)
            yield source

    def close(self) -> None:
        self.http.close()
