"""Fixtures for the tool tests: parley with its real tool set (the built-in todo tools plus the
MCP servers named in the settings), and small helpers to drive runs over HTTP."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import Live
from tests.support.sse import Event, collect

TOY = Path(__file__).parent / "servers" / "toy.py"


def toy_server(name: str = "toy", **overrides: Any) -> dict[str, Any]:
    """``[[mcp_servers]]`` for the toy test server, run over stdio."""
    return {"name": name, "command": sys.executable, "args": [str(TOY)], **overrides}


@pytest.fixture
def tool_registry() -> None:
    """No registry from the test: parley builds its own from the settings (``build_tools``)."""
    return None


def call(
    name: str, arguments: dict[str, Any] | None = None, ident: str | None = None
) -> dict[str, Any]:
    """A scripted model step that calls one tool."""
    return {
        "tool_call": {"name": name, "arguments": arguments or {}, "id": ident or f"call_{name}"}
    }


async def conversation(live: Live, user: str = "alice", **fields: Any) -> str:
    async with live.client(user) as http:
        response = await http.post("/api/conversations", json=fields)
        assert response.status_code == 201, response.text
        return str(response.json()["id"])


async def send(
    live: Live, cid: str, content: str, *, user: str = "alice", stop_after: str | None = None
) -> tuple[str, list[Event]]:
    """Send a message; the run id and the stream's events (up to ``stop_after``)."""
    async with live.client(user) as http:
        response, events = await collect(
            http,
            "POST",
            f"/api/conversations/{cid}/messages",
            json_body={"content": content},
            stop_after=stop_after,
        )
    assert response.status_code == 200, response.text
    return response.headers["x-run-id"], events


async def rest_of(
    live: Live,
    run_id: str,
    after: list[Event],
    *,
    user: str = "alice",
    stop_after: str | None = None,
) -> list[Event]:
    """The run's events after the last one in ``after`` (``Last-Event-ID``)."""
    last = [e.id for e in after if e.id]
    headers = {"Last-Event-ID": last[-1]} if last else {}
    async with live.client(user) as http:
        _, events = await collect(
            http, "GET", f"/api/runs/{run_id}/events", headers=headers, stop_after=stop_after
        )
    return events


async def approve(live: Live, run_id: str, ident: str, *, user: str = "alice") -> None:
    """Approve the waiting call ``ident`` of ``run_id``."""
    async with live.client(user) as http:
        response = await http.post(f"/api/runs/{run_id}/approvals/{ident}", json={"approved": True})
    assert response.status_code == 200, response.text


def named(events: list[Event], kind: str) -> list[dict[str, Any]]:
    return [e.data for e in events if e.event == kind]
