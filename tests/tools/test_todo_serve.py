"""``parley mcp todo --transport http``: it says where it listens once it does, and a port in use
is one line."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from tests.conftest import SECRET, token
from tests.support.lines import parley


def _env(tmp_path: Path, database_url: str) -> dict[str, str]:
    return {
        "PARLEY_DATABASE_URL": database_url,
        "PARLEY_DATA_DIR": str(tmp_path / "cli"),
        "PARLEY_JWT_SECRET": SECRET,
    }


async def test_parley_mcp_todo_over_http_prints_its_url_which_answers_mcp(
    tmp_path: Path, sqlite_url: str
) -> None:
    args = ("mcp", "todo", "--transport", "http", "--port", "0")
    with parley(*args, env=_env(tmp_path, sqlite_url), cwd=tmp_path) as output:
        pattern = r"^parley todo MCP server on (http://127\.0\.0\.1:\d+/mcp)$"
        url = (await asyncio.to_thread(output.wait_for, pattern)).group(1)
        headers = {"Authorization": f"Bearer {token('alice')}"}
        async with (
            asyncio.timeout(30),
            httpx2.AsyncClient(headers=headers, timeout=10) as http,  # the client type mcp takes
            Client(streamable_http_client(url, http_client=http), mode="legacy") as client,
        ):
            tools = (await client.list_tools()).tools
    assert "add_task" in {tool.name for tool in tools}


def test_parley_mcp_todo_on_a_port_in_use_says_so_in_one_line_and_exits_1(
    tmp_path: Path, sqlite_url: str
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as held:
        port = held.getsockname()[1]
        args = ["mcp", "todo", "--transport", "http", "--port", str(port)]
        done = subprocess.run(
            [sys.executable, "-m", "parley", *args],
            env={**os.environ, **_env(tmp_path, sqlite_url)},
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 1
    assert done.stderr == (
        f"parley mcp todo: port {port} on 127.0.0.1 is in use; choose another with --port {port + 1}\n"
    )
    assert done.stdout == ""
