"""The todo MCP server over streamable HTTP on a real port, behind the bearer JWT; parley
connects to it as to any configured HTTP MCP server."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
import uvicorn
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from tests.conftest import Live, make_settings, token
from tests.tools.conftest import call, conversation, named, send

from parley.providers.scripted import ScriptedProvider
from parley.tools.todo.serve import http_app, open_store


@pytest.fixture
async def todo_url(tmp_path: Path, sqlite_url: str) -> AsyncIterator[str]:
    settings = make_settings(tmp_path, sqlite_url)
    async with open_store(settings) as store:
        config = uvicorn.Config(
            http_app(settings, store), host="127.0.0.1", port=0, log_level="warning"
        )
        server = uvicorn.Server(config)
        listener = socket.create_server(("127.0.0.1", 0))  # connections queue until it serves
        port = listener.getsockname()[1]
        task = asyncio.create_task(server.serve(sockets=[listener]))
        try:
            yield f"http://127.0.0.1:{port}/mcp"
        finally:
            server.should_exit = True
            await task
            listener.close()


@pytest.fixture
def settings_overrides(todo_url: str) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token('alice')}"}
    return {"mcp_servers": [{"name": "tasks", "url": todo_url, "headers": headers}]}


async def _client_for(url: str, user: str) -> list[Any]:
    """list_tasks through a plain SDK client with ``user``'s token."""
    headers = {"Authorization": f"Bearer {token(user)}"}
    async with (
        httpx2.AsyncClient(headers=headers) as http,
        Client(streamable_http_client(url, http_client=http), mode="legacy") as client,
    ):
        result = await client.call_tool("list_tasks", {})
    assert result.structured_content is not None
    tasks: list[Any] = result.structured_content["tasks"]
    return tasks


async def test_without_a_valid_bearer_token_the_server_answers_401(todo_url: str) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}
    async with httpx.AsyncClient() as http:
        missing = await http.post(todo_url, json=body)
        forged = await http.post(todo_url, json=body, headers={"Authorization": "Bearer not.a.jwt"})
    assert missing.status_code == forged.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert missing.json()["error"]["code"] == "ERR_UNAUTHENTICATED"


async def test_parley_calls_the_http_server_whose_clashing_tools_are_namespaced(
    live: Live, scripted: ScriptedProvider, todo_url: str
) -> None:
    names = {t.name: t.server for t in live.services.tools.all()}
    assert names["add_task"] == "todo"
    assert names["tasks__add_task"] == "tasks"
    assert names["tasks__list_tasks"] == "tasks"
    scripted.enqueue(
        [call("tasks__add_task", {"title": "via http"})],
        [call("tasks__list_tasks", {})],
        [{"text": "Added over HTTP."}],
    )
    cid = await conversation(live)
    _, events = await send(live, cid, "add a task over http")
    added, listed = named(events, "tool_result")
    assert added["result"]["title"] == "via http"
    assert listed["result"]["count"] == 1
    assert [t.title for t in await live.services.store.list_tasks("alice")] == ["via http"]
    assert await _client_for(todo_url, "bob") == []
    assert [t["title"] for t in await _client_for(todo_url, "alice")] == ["via http"]
    read_only = {t.name: t.read_only for t in live.services.tools.all() if t.server == "tasks"}
    assert read_only["tasks__list_tasks"] and not read_only["tasks__delete_task"]
    destructive = {
        t.name for t in live.services.tools.all() if t.server == "tasks" and t.destructive
    }
    assert destructive == {"tasks__delete_task"}
