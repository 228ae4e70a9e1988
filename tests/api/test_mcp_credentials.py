"""``/api/mcp/servers``: the configured servers, and each user's own credential for a per-user
one: validated, sealed at rest, never returned, never logged."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError
from sqlalchemy import select
from tests.conftest import Live, make_settings
from tests.fakes.mcp_whoami import WhoamiServer, serve_whoami
from tests.tools.conftest import call, conversation, named, send

from parley.credentials import CredentialVault, SecretBox
from parley.logging import configure
from parley.store.tables import McpCredential

OLD_KEY = "an-older-secret-key-" + "o" * 30
NEW_KEY = "the-newest-secret-key-" + "n" * 30
ROUTE = "/api/mcp/servers/forge/credentials"
SECRET = "s3cr3t-credential-value-9f2c"


@pytest.fixture
async def whoami() -> AsyncIterator[WhoamiServer]:
    async with serve_whoami() as server:
        yield server


@pytest.fixture
def tool_registry() -> None:
    """No registry from the test: parley builds its own from the settings."""
    return None


@pytest.fixture
def settings_overrides(whoami: WhoamiServer) -> dict[str, Any]:
    forge = {"name": "forge", "url": whoami.url, "credentials": "per_user"}
    shared = {"name": "shared", "url": whoami.url}
    off = {"name": "off", "url": whoami.url, "credentials": "per_user", "enabled": False}
    return {"secret_key": OLD_KEY, "mcp_servers": [forge, shared, off]}


def _refused(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["success"] is False and body["error"]["code"] == code, body
    assert response.headers["x-error-code"] == code
    message: str = body["error"]["message"]
    return message


async def _rows(live: Live) -> list[McpCredential]:
    async with live.services.store.sessions() as session:
        return list((await session.execute(select(McpCredential))).scalars())


async def test_a_credential_is_stored_sealed_and_get_says_only_whether_it_is_there(
    live: Live,
) -> None:
    async with live.client("alice") as http:
        put = await http.put(ROUTE, json={"bearer": SECRET})
        mine = (await http.get("/api/mcp/servers")).json()
    async with live.client("bob") as http:
        bobs = (await http.get("/api/mcp/servers")).json()
    assert put.status_code == 200 and SECRET not in put.text
    assert put.json() == {
        "name": "forge",
        "credentials": "per_user",
        "connected": True,
        "tools": 1,
        "connect": f"PUT {ROUTE}",
    }
    assert [(s["name"], s["connected"]) for s in mine["items"]] == [
        ("forge", True),
        ("shared", True),
    ]
    assert [(s["name"], s["connected"]) for s in bobs["items"]] == [
        ("forge", False),
        ("shared", True),
    ]
    assert SECRET not in json.dumps(mine)
    [row] = await _rows(live)
    assert (row.user_id, row.server) == ("alice", "forge")
    assert SECRET not in row.sealed and SECRET.encode().hex() not in row.sealed
    assert "Bearer" not in row.sealed
    opened = json.loads(SecretBox([OLD_KEY]).open(row.sealed))
    assert opened == {"Authorization": f"Bearer {SECRET}"}


async def test_a_put_replaces_the_credential_and_a_delete_forgets_it(live: Live) -> None:
    async with live.client("alice") as http:
        await http.put(ROUTE, json={"bearer": "first"})
        await http.put(ROUTE, json={"headers": {"X-Api-Key": "second"}})
        vault = live.services.credentials
        assert await vault.headers("alice", "forge") == {"X-Api-Key": "second"}
        deleted = await http.delete(ROUTE)
        again = await http.delete(ROUTE)
        listed = (await http.get("/api/mcp/servers")).json()["items"]
    assert deleted.status_code == 204
    _refused(again, 404, "ERR_NOT_FOUND")
    assert listed[0] == {**listed[0], "name": "forge", "connected": False}
    assert await _rows(live) == []


@pytest.mark.parametrize("method", ["PUT", "DELETE"])
async def test_an_unknown_or_disabled_server_is_a_404_and_a_shared_one_a_400(
    live: Live, method: str
) -> None:
    async with live.client("alice") as http:
        for name in ("nope", "off", "x' OR '1'='1"):
            path = f"/api/mcp/servers/{name}/credentials"
            response = await http.request(method, path, json={"bearer": "t"})
            assert "MCP server" in _refused(response, 404, "ERR_NOT_FOUND")
        shared_path = "/api/mcp/servers/shared/credentials"
        shared = await http.request(method, shared_path, json={"bearer": "t"})
    assert "shared" in _refused(shared, 400, "ERR_VALIDATION")
    assert await _rows(live) == []


BAD_BODIES = [
    {},
    {"bearer": "t", "headers": {"X-Api-Key": "k"}},
    {"bearer": ""},
    {"bearer": "has space"},
    {"bearer": "line\r\nX-Injected: 1"},
    {"bearer": 42},
    {"bearer": "x" * 9000},
    {"headers": {}},
    {"headers": {"X-Api-Key": "line\r\nX-Injected: 1"}},
    {"headers": {"Bad Name": "v"}},
    {"headers": {"": "v"}},
    {"headers": {"X-Api-Key": ""}},
    {"headers": {"Content-Type": "text/plain"}},
    {"headers": {"mcp-session-id": "someone-elses"}},
    {"headers": {f"X-{i}": "v" for i in range(21)}},
    {"headers": ["Authorization", "Bearer t"]},
    {"headers": {"X-Api-Key": None}},
]


@pytest.mark.parametrize("body", BAD_BODIES, ids=range(len(BAD_BODIES)))
async def test_a_bad_body_is_a_422_in_the_contract_shape(live: Live, body: Any) -> None:
    async with live.client("alice") as http:
        response = await http.put(ROUTE, json=body)
    _refused(response, 422, "ERR_VALIDATION")
    assert await _rows(live) == []


async def test_the_secret_never_reaches_a_log_line_even_at_debug(
    live: Live, whoami: WhoamiServer, capsys: pytest.CaptureFixture[str], debug_logs: None
) -> None:
    """``whoami`` echoes only ``Authorization``: the key reaches the server, not the result."""
    capsys.readouterr()
    credential = {"headers": {"X-Api-Key": SECRET}}
    async with live.client("alice") as http:
        assert (await http.put(ROUTE, json=credential)).status_code == 200
        await http.get("/api/mcp/servers")
        bad = await http.put(ROUTE, json={**credential, "bearer": SECRET})
        assert bad.status_code == 422 and SECRET not in bad.text
    live.scripted.enqueue([call("forge__whoami")], [{"text": "done"}])
    _, events = await send(live, await conversation(live), "who am I?")
    assert named(events, "tool_result") and whoami.calls[-1].headers["x-api-key"] == SECRET
    async with live.client("alice") as http:
        assert (await http.delete(ROUTE)).status_code == 204
    err = capsys.readouterr().err
    assert '"event": "request"' in err and "mcp.client.streamable_http" in err
    assert SECRET not in err


@pytest.fixture
def debug_logs() -> Iterator[None]:
    """Every logger at DEBUG, as JSON lines on stderr (the SDK's and httpx's included)."""
    root = logging.getLogger()
    level = root.level
    configure(json_logs=True, level="DEBUG")
    root.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        root.setLevel(level)
        configure(json_logs=False)


async def test_rows_sealed_with_an_older_key_are_sealed_again_with_the_newest(
    live: Live,
) -> None:
    async with live.client("alice") as http:
        await http.put(ROUTE, json={"bearer": SECRET})
    [before] = await _rows(live)
    rotated = CredentialVault(live.services.store, SecretBox([NEW_KEY, OLD_KEY]))
    assert await rotated.rotate() == 1
    assert await rotated.rotate() == 0
    [after] = await _rows(live)
    assert after.sealed != before.sealed
    newest_only = CredentialVault(live.services.store, SecretBox([NEW_KEY]))
    assert await newest_only.headers("alice", "forge") == {"Authorization": f"Bearer {SECRET}"}


def test_a_per_user_server_without_parley_secret_key_is_a_start_up_error(
    tmp_path: Path, sqlite_url: str
) -> None:
    forge = {"name": "forge", "url": "http://127.0.0.1:9/mcp", "credentials": "per_user"}
    with pytest.raises(ValidationError, match="set PARLEY_SECRET_KEY"):
        make_settings(tmp_path, sqlite_url, mcp_servers=[forge])
    with pytest.raises(ValidationError, match="32"):
        make_settings(tmp_path, sqlite_url, mcp_servers=[forge], secret_key=f"{NEW_KEY},short")
    stdio = {"name": "forge", "command": "mcp-server", "credentials": "per_user"}
    with pytest.raises(ValidationError, match="need a url server"):
        make_settings(tmp_path, sqlite_url, mcp_servers=[stdio], secret_key=NEW_KEY)
    settings = make_settings(tmp_path, sqlite_url, mcp_servers=[forge], secret_key=NEW_KEY)
    assert settings.masked()["secret_key"] == "********"
