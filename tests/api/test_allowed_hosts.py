"""The ``Host`` header: a name the server does not answer to is refused on every route, HTTP and
WebSocket, before any route runs (DNS rebinding: a page of attacker.example whose name now points
at 127.0.0.1 reaches parley with ``Host: attacker.example``)."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from tests.conftest import Live, make_settings, serve, token

from parley import signin
from parley.api.middleware import HOST_REFUSED
from parley.config import Settings
from parley.providers.scripted import ScriptedProvider

ATTACKER = "attacker.example"
LOOPBACK = ["localhost", "127.0.0.1", "[::1]"]
REFUSED = {"success": False, "error": {"code": "ERR_VALIDATION", "message": HOST_REFUSED}}


def _assert_refused(response: httpx.Response) -> None:
    assert response.status_code == 400, response.text
    assert response.json() == REFUSED
    assert response.headers["x-error-code"] == "ERR_VALIDATION"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/conversations"),
        ("POST", "/api/conversations"),
        ("POST", "/api/auth/signin-link"),
        ("GET", "/"),
        ("GET", "/static/js/main.js"),
        ("GET", "/healthz"),
        ("GET", "/openapi.json"),
        ("GET", "/no/such/route"),
    ],
)
async def test_a_foreign_host_is_a_400_on_the_api_and_the_page(
    live: Live, method: str, path: str
) -> None:
    async with live.client("alice") as http:
        response = await http.request(method, path, headers={"Host": ATTACKER}, json={})
    _assert_refused(response)


async def test_the_openai_door_refuses_it_in_openais_error_shape(live: Live) -> None:
    async with live.client("alice") as http:
        response = await http.get("/v1/models", headers={"Host": ATTACKER})
    assert response.status_code == 400
    assert response.json()["error"]["message"] == HOST_REFUSED


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1.attacker.example",
        "localhost.attacker.example",
        "attacker.example:8000",
        "",
        "[::2]",
    ],
)
async def test_names_that_only_look_local_are_refused(live: Live, host: str) -> None:
    async with live.client("alice") as http:
        _assert_refused(await http.get("/api/conversations", headers={"Host": host}))


async def test_a_refused_request_does_not_reach_the_route(live: Live) -> None:
    """The sign-in link through a rebound name: refused, and the code still works afterwards."""
    code = await signin.issue(live.services.store, "bob")
    async with live.client(None) as http:
        body = {"code": code}
        _assert_refused(
            await http.post("/api/auth/signin-link", json=body, headers={"Host": ATTACKER})
        )
        assert (await http.post("/api/auth/signin-link", json=body)).status_code == 200


@pytest.mark.parametrize("name", ["localhost", "127.0.0.1", "[::1]", "LOCALHOST"])
@pytest.mark.parametrize("with_port", [True, False])
async def test_the_loopback_names_are_answered_with_any_port(
    live: Live, name: str, with_port: bool
) -> None:
    host = f"{name}:{urlsplit(live.url).port}" if with_port else name
    async with live.client("alice") as http:
        response = await http.get("/api/conversations", headers={"Host": host})
    assert response.status_code == 200, response.text


async def _handshake(live: Live, host: str) -> tuple[str, bytes]:
    """A WebSocket opening handshake for alice's progress socket with ``host``: the status line
    and the body of the answer."""
    port = urlsplit(live.url).port
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = (
        f"GET /ws/alice/chat?token={token('alice')} HTTP/1.1\r\nHost: {host}\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    try:
        writer.write(request.encode())
        async with asyncio.timeout(5):
            head = await reader.readuntil(b"\r\n\r\n")
            length = re.search(rb"\r\ncontent-length: *(\d+)", head, re.IGNORECASE)
            body = await reader.readexactly(int(length.group(1)) if length else 0)
    finally:
        writer.close()
    return head.split(b"\r\n", 1)[0].decode(), body


async def test_the_progress_socket_refuses_a_foreign_host_with_a_400(live: Live) -> None:
    status, body = await _handshake(live, ATTACKER)
    assert status == "HTTP/1.1 400 Bad Request"
    assert json.loads(body) == REFUSED
    status, _ = await _handshake(live, urlsplit(live.url).netloc)
    assert status == "HTTP/1.1 101 Switching Protocols"


async def test_configured_names_are_answered_besides_the_loopback_ones(
    tmp_path: Path, sqlite_url: str, scripted: ScriptedProvider
) -> None:
    settings = make_settings(
        tmp_path, sqlite_url, allowed_hosts=["chat.example.com", "*.example.org"]
    )
    async for live in serve(settings, scripted, None):
        async with live.client("alice") as http:
            for host in ("chat.example.com", "chat.example.com:443", "a.example.org", "127.0.0.1"):
                response = await http.get("/api/conversations", headers={"Host": host})
                assert response.status_code == 200, f"{host}: {response.text}"
            for host in (ATTACKER, "example.org", "www.chat.example.com"):
                _assert_refused(await http.get("/api/conversations", headers={"Host": host}))


@pytest.mark.parametrize(
    ("values", "allowed"),
    [
        ({}, LOOPBACK),
        ({"host": "::1"}, LOOPBACK),
        ({"host": "localhost"}, LOOPBACK),
        ({"host": "0.0.0.0"}, ["*"]),
        ({"host": "chat.internal"}, ["*"]),
        (
            {"host": "0.0.0.0", "allowed_hosts": ["chat.example.com"]},
            [*LOOPBACK, "chat.example.com"],
        ),
        (
            {"allowed_hosts": " Chat.Example.com ,*.example.org"},
            [*LOOPBACK, "chat.example.com", "*.example.org"],
        ),
        ({"allowed_hosts": '["chat.example.com"]'}, [*LOOPBACK, "chat.example.com"]),
        ({"allowed_hosts": "*"}, [*LOOPBACK, "*"]),
    ],
)
def test_which_names_are_answered_by_default_and_when_configured(
    values: dict[str, Any], allowed: list[str]
) -> None:
    """Unset: a loopback bind answers the loopback names, any other bind any name. Set: those
    names, and the loopback names always (a page cannot rebind its name into ``localhost``)."""
    assert Settings(**values).effective_allowed_hosts == allowed


@pytest.mark.parametrize("pattern", ["a*.example.com", "*example.com", "http://chat.example.com"])
def test_a_pattern_the_check_cannot_use_fails_at_start_up(pattern: str) -> None:
    with pytest.raises(ValueError, match="use a host name"):
        Settings(allowed_hosts=[pattern])
