"""An MCP server configured ``credentials = "oauth"``: each user authorizes parley through MCP's
OAuth flow (the ``mcp`` SDK's client against the SDK's own authorization server), their calls
use their own tokens, and the SDK refreshes an expired one, saved back for that user only."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import select
from tests.conftest import Live, make_settings, serve, token
from tests.fakes.mcp_oauth import LOGIN_HEADER, OAuthWhoami, serve_oauth_whoami
from tests.support.sse import Event
from tests.tools.conftest import call, conversation, named, send

from parley.providers.scripted import ScriptedProvider
from parley.store.tables import McpCredential

SECRET_KEY = "oauth-test-key-" + "k" * 30
START = "/api/mcp/servers/forge/oauth/start"
CALLBACK = "/api/mcp/oauth/callback"


@pytest.fixture
async def oauth() -> AsyncIterator[OAuthWhoami]:
    async with serve_oauth_whoami() as server:
        yield server


@pytest.fixture
def settings_overrides(oauth: OAuthWhoami) -> dict[str, Any]:
    forge = {"name": "forge", "url": oauth.url, "credentials": "oauth"}
    keyed = {"name": "keyed", "url": oauth.url, "credentials": "per_user"}
    return {"secret_key": SECRET_KEY, "mcp_servers": [forge, keyed]}


async def start(live: Live, user: str) -> str:
    """``user`` starts the flow: the authorization URL parley answers."""
    async with live.client(user) as http:
        response = await http.post(START)
    assert response.status_code == 200, response.text
    url: str = response.json()["authorization_url"]
    return url


async def sign_in(authorization_url: str, login: str) -> str:
    """A browser signed in at the authorization server as ``login`` follows the URL: the
    callback URL the server sends it back to (not yet followed)."""
    async with httpx.AsyncClient(headers={LOGIN_HEADER: login}, timeout=10) as browser:
        response = await browser.get(authorization_url)
        while response.status_code == 302 and CALLBACK not in response.headers["location"]:
            response = await browser.get(response.headers["location"])
    assert response.status_code == 302, response.text
    return response.headers["location"]


async def come_back(callback_url: str, user: str | None = None) -> httpx.Response:
    """The browser arrives at parley's callback (it brings no parley token unless ``user``)."""
    headers = {"Authorization": f"Bearer {token(user)}"} if user else {}
    async with httpx.AsyncClient(headers=headers, timeout=30) as browser:
        return await browser.get(callback_url)


async def authorize(live: Live, user: str) -> None:
    response = await come_back(await sign_in(await start(live, user), user))
    assert response.status_code == 200, response.text
    assert "connected" in response.text and "forge" in response.text


async def whoami_turn(live: Live, user: str) -> list[Event]:
    live.scripted.enqueue([call("whoami")], [{"text": "That is who you are."}])
    cid = await conversation(live, user)
    _, events = await send(live, cid, "who am I?", user=user)
    return events


def answer(events: list[Event]) -> str:
    [result] = named(events, "tool_result")
    return json.dumps(result["result"])


async def servers(live: Live, user: str) -> dict[str, dict[str, Any]]:
    async with live.client(user) as http:
        items = (await http.get("/api/mcp/servers")).json()["items"]
    return {item["name"]: item for item in items}


async def test_alice_authorizes_parley_and_her_calls_act_as_her(
    live: Live, oauth: OAuthWhoami
) -> None:
    assert (await servers(live, "alice"))["forge"]["connected"] is False
    await authorize(live, "alice")

    events = await whoami_turn(live, "alice")

    assert "subject=alice token=1" in answer(events)
    forge = (await servers(live, "alice"))["forge"]
    assert forge == {
        "name": "forge",
        "credentials": "oauth",
        "connected": True,
        "tools": 1,
        "connect": f"POST {START}",
    }
    grant = await live.services.credentials.grant("alice", "forge")
    assert grant is not None and grant.tokens is not None and grant.client is not None
    assert grant.tokens.access_token.startswith("at1-")
    async with live.services.store.sessions() as session:
        [row] = (await session.execute(select(McpCredential))).scalars()
    assert (row.user_id, row.server, row.kind) == ("alice", "forge", "oauth")
    assert grant.tokens.access_token not in row.sealed and grant.client.client_id not in row.sealed


async def test_bob_who_has_not_authorized_gets_a_tool_error_naming_the_start_route(
    live: Live, oauth: OAuthWhoami
) -> None:
    await authorize(live, "alice")  # the tools are listed through her session

    [error] = named(await whoami_turn(live, "bob"), "tool_error")

    assert f"POST {START}" in error["error"] and "not connected" in error["error"]
    assert oauth.calls == []
    assert (await servers(live, "bob"))["forge"]["connected"] is False


async def test_an_expired_token_is_refreshed_through_the_sdk_and_saved_for_her(
    live: Live, oauth: OAuthWhoami
) -> None:
    """Time passes: the server refuses her first token, and the expiry parley kept for it is
    behind; her next call refreshes it (no person involved) and keeps the new one."""
    await authorize(live, "alice")
    vault = live.services.credentials
    first = await vault.grant("alice", "forge")
    assert first is not None and first.tokens is not None
    oauth.provider.expire("alice")
    await vault.put_grant("alice", "forge", first.model_copy(update={"expires_at": 1.0}))

    refreshed = answer(await whoami_turn(live, "alice"))
    again = answer(await whoami_turn(live, "alice"))

    assert "subject=alice token=2" in refreshed and "subject=alice token=2" in again
    assert oauth.refreshes("alice") == 1
    kept = await vault.grant("alice", "forge")
    assert kept is not None and kept.tokens is not None
    assert kept.tokens.access_token.startswith("at2-")
    assert kept.tokens.refresh_token != first.tokens.refresh_token
    assert kept.expires_at is not None and kept.expires_at > first.expires_at - 60


async def test_a_forged_or_replayed_state_is_a_400(live: Live, oauth: OAuthWhoami) -> None:
    forged = await come_back(f"{live.url}{CALLBACK}?state=forged&code=whatever")
    callback_url = await sign_in(await start(live, "alice"), "alice")
    assert (await come_back(callback_url)).status_code == 200
    replayed = await come_back(callback_url)

    for response in (forged, replayed):
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] == "ERR_VALIDATION"
    assert len(oauth.provider.issued) == 1


async def test_bob_cannot_finish_alices_flow_and_her_tokens_stay_hers(
    live: Live, oauth: OAuthWhoami
) -> None:
    callback_url = await sign_in(await start(live, "alice"), "alice")

    bobs = await come_back(callback_url, user="bob")

    assert bobs.status_code == 403, bobs.text
    assert oauth.provider.issued == []  # her code was not exchanged
    assert (await come_back(callback_url)).status_code == 200  # still hers to finish
    assert await live.services.credentials.grant("bob", "forge") is None
    assert "subject=alice" in answer(await whoami_turn(live, "alice"))
    [error] = named(await whoami_turn(live, "bob"), "tool_error")
    assert f"POST {START}" in error["error"]


async def test_a_code_for_another_login_is_still_stored_for_whoever_started_the_flow(
    live: Live, oauth: OAuthWhoami
) -> None:
    """The callback cannot choose the parley user: the tokens go to the user who started."""
    await come_back(await sign_in(await start(live, "bob"), "mallory"))
    assert "subject=mallory" in answer(await whoami_turn(live, "bob"))
    assert await live.services.credentials.grant("alice", "forge") is None


async def test_deleting_the_credential_forgets_the_tokens(live: Live, oauth: OAuthWhoami) -> None:
    await authorize(live, "alice")
    async with live.client("alice") as http:
        assert (await http.delete("/api/mcp/servers/forge/credentials")).status_code == 204
    [error] = named(await whoami_turn(live, "alice"), "tool_error")
    assert f"POST {START}" in error["error"]
    assert await live.services.credentials.grant("alice", "forge") is None
    assert (await servers(live, "alice"))["forge"]["connected"] is False


async def test_only_a_configured_oauth_server_can_be_started_or_given_a_bearer(
    live: Live, oauth: OAuthWhoami
) -> None:
    async with live.client("alice") as http:
        unknown = await http.post("/api/mcp/servers/nowhere/oauth/start")
        keyed = await http.post("/api/mcp/servers/keyed/oauth/start")
        bearer = await http.put("/api/mcp/servers/forge/credentials", json={"bearer": "x"})
    assert unknown.status_code == 404
    assert keyed.status_code == 400 and "not configured for OAuth" in keyed.text
    assert bearer.status_code == 400 and f"POST {START}" in bearer.text
    assert await live.services.credentials.connected("alice") == {}


async def test_the_redirect_uri_is_on_the_public_url_when_one_is_set(
    oauth: OAuthWhoami, settings_overrides: dict[str, Any], tmp_path: Path, sqlite_url: str
) -> None:
    overrides = {**settings_overrides, "public_url": "https://chat.example.com/"}
    settings = make_settings(tmp_path, sqlite_url, **overrides)
    async for live in serve(settings, ScriptedProvider(turns=[]), None):
        url = await start(live, "alice")
    [redirect] = parse_qs(urlsplit(url).query)["redirect_uri"]
    assert redirect == f"https://chat.example.com{CALLBACK}"
    [client] = oauth.provider.clients.values()
    assert [str(u) for u in client.redirect_uris or []] == [redirect]


async def test_a_refused_authorization_is_a_400_and_ends_the_flow(
    live: Live, oauth: OAuthWhoami
) -> None:
    url = await start(live, "alice")
    [state] = parse_qs(urlsplit(url).query)["state"]
    callback = f"{live.url}{CALLBACK}?state={state}&error=access_denied"
    refused, again = await come_back(callback), await come_back(callback)
    assert refused.status_code == 400 and "access_denied" in refused.text
    assert again.status_code == 400 and "unknown or expired" in again.text


async def test_after_a_restart_her_first_turn_lists_the_tools_through_her_session(
    oauth: OAuthWhoami, settings_overrides: dict[str, Any], tmp_path: Path, sqlite_url: str
) -> None:
    """The server has no shared credential: a new process knows no tools of it until a session
    opens. Alice connected before the restart; her first turn after it is offered the tool."""
    settings = make_settings(tmp_path, sqlite_url, **settings_overrides)
    async for live in serve(settings, ScriptedProvider(turns=[]), None):
        await authorize(live, "alice")
    async for live in serve(settings, ScriptedProvider(turns=[]), None):
        assert (await servers(live, "alice"))["forge"]["tools"] == 0
        events = await whoami_turn(live, "alice")
        assert "subject=alice" in answer(events)
        assert live.scripted.requests[0].tools  # offered in the very first request
        assert (await servers(live, "bob"))["forge"]["tools"] == 1
