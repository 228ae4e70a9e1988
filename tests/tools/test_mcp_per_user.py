"""A per-user MCP server: each user's calls go through a session of their own, opened with the
credential they stored; a user who has not connected it gets a tool error saying how."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import Live, make_settings, serve
from tests.fakes.mcp_whoami import WhoamiServer, serve_whoami
from tests.support.sse import Event
from tests.tools.conftest import call, conversation, named, send

from parley.config import McpServerConfig
from parley.providers.scripted import ScriptedProvider
from parley.tools.base import ToolContext
from parley.tools.mcp import McpServer
from parley.tools.mcp_users import CredentialUnreadable
from parley.tools.setup import ToolManager

SECRET_KEY = "per-user-test-key-" + "k" * 30
ROUTE = "/api/mcp/servers/forge/credentials"


@pytest.fixture
async def whoami() -> AsyncIterator[WhoamiServer]:
    async with serve_whoami() as server:
        yield server


def _forge(whoami: WhoamiServer) -> dict[str, Any]:
    forge = {"name": "forge", "url": whoami.url, "credentials": "per_user"}
    return {"secret_key": SECRET_KEY, "mcp_servers": [forge]}


@pytest.fixture
def settings_overrides(whoami: WhoamiServer) -> dict[str, Any]:
    return _forge(whoami)


async def connect(live: Live, user: str, body: dict[str, Any]) -> None:
    async with live.client(user) as http:
        response = await http.put(ROUTE, json=body)
    assert response.status_code == 200, response.text


async def whoami_turn(live: Live, user: str) -> list[Event]:
    """A turn of ``user``'s whose scripted model calls ``whoami`` once."""
    live.scripted.enqueue([call("whoami")], [{"text": "That is who you are."}])
    cid = await conversation(live, user)
    _, events = await send(live, cid, "who am I?", user=user)
    return events


def result_text(events: list[Event]) -> str:
    [result] = named(events, "tool_result")
    return json.dumps(result["result"])


async def test_alice_and_bob_each_see_only_their_own_token_through_sessions_of_their_own(
    live: Live, whoami: WhoamiServer
) -> None:
    await connect(live, "alice", {"bearer": "alice-token-1"})
    await connect(live, "bob", {"headers": {"Authorization": "Token bob-token-2"}})
    alice = await whoami_turn(live, "alice")
    bob = await whoami_turn(live, "bob")
    again = await whoami_turn(live, "alice")

    assert "Bearer alice-token-1" in result_text(alice)
    assert "Token bob-token-2" in result_text(bob)
    assert "bob-token-2" not in json.dumps([e.data for e in alice + again])
    assert "alice-token-1" not in json.dumps([e.data for e in bob])
    alices, bobs = (
        whoami.sessions_of("Bearer alice-token-1"),
        whoami.sessions_of("Token bob-token-2"),
    )
    assert len(alices) == 1 and len(bobs) == 1 and alices != bobs  # kept, and never shared
    assert None not in alices | bobs
    assert len(whoami.calls) == 3


async def test_carol_who_has_not_connected_gets_a_tool_error_naming_the_route(
    live: Live, whoami: WhoamiServer
) -> None:
    events = await whoami_turn(live, "carol")
    [error] = named(events, "tool_error")
    assert f"PUT {ROUTE}" in error["error"] and "not connected" in error["error"]
    told = json.dumps(live.scripted.requests[-1].model_dump(mode="json"))
    assert f"PUT {ROUTE}" in told  # the model sees it too
    assert whoami.calls == []


async def test_the_shared_session_lists_the_tools_and_is_never_used_for_a_call(
    live: Live, whoami: WhoamiServer
) -> None:
    tool = live.services.tools.get("whoami")
    assert tool is not None and tool.server == "forge"
    await connect(live, "alice", {"bearer": "alice-token-1"})
    await whoami_turn(live, "alice")
    assert [c.authorization for c in whoami.calls] == ["Bearer alice-token-1"]


async def test_a_credential_the_server_refuses_is_a_tool_error_saying_how_to_replace_it(
    live: Live, whoami: WhoamiServer
) -> None:
    await connect(live, "alice", {"bearer": "revoked"})
    [error] = named(await whoami_turn(live, "alice"), "tool_error")
    assert "could not connect to the MCP server 'forge' with your credential" in error["error"]
    assert f"PUT {ROUTE}" in error["error"]
    await connect(live, "alice", {"bearer": "alice-token-3"})
    assert "Bearer alice-token-3" in result_text(await whoami_turn(live, "alice"))


async def test_another_instance_on_the_same_database_calls_with_the_credential_stored_now(
    live: Live, whoami: WhoamiServer, tmp_path: Path, sqlite_url: str
) -> None:
    """Each instance opens its own session from the stored credential, read at every call: a
    credential replaced through one instance is the one the other sends next."""
    settings = make_settings(tmp_path, sqlite_url, **_forge(whoami))
    async for other in serve(settings, ScriptedProvider(turns=[]), None):
        assert isinstance(other.services.tools, ToolManager)
        await connect(live, "alice", {"bearer": "first-token"})
        assert "Bearer first-token" in result_text(await whoami_turn(other, "alice"))
        await connect(live, "alice", {"bearer": "second-token"})
        assert "Bearer second-token" in result_text(await whoami_turn(other, "alice"))
        async with live.client("alice") as http:
            assert (await http.delete(ROUTE)).status_code == 204
        [error] = named(await whoami_turn(other, "alice"), "tool_error")
        assert f"PUT {ROUTE}" in error["error"]
    assert [c.authorization for c in whoami.calls] == ["Bearer first-token", "Bearer second-token"]


# the sessions themselves, through a server with a credential source of the test's ----------


class Credentials:
    """A credential source: the users' headers, in a dict the test changes."""

    def __init__(self) -> None:
        self.by_user: dict[str, dict[str, str]] = {}
        self.unreadable: set[str] = set()

    async def headers(self, user_id: str, server: str) -> dict[str, str] | None:
        if user_id in self.unreadable:
            raise CredentialUnreadable("no key opens it")
        return self.by_user.get(user_id)


@pytest.fixture
async def forge(whoami: WhoamiServer) -> AsyncIterator[tuple[McpServer, Credentials]]:
    credentials = Credentials()
    config = McpServerConfig(
        name="forge", url=whoami.url, credentials="per_user", max_sessions=2, timeout=5
    )
    server = McpServer(config, credentials=credentials)
    await server.start()
    try:
        yield server, credentials
    finally:
        await server.aclose()


async def _call(server: McpServer, user: str) -> tuple[bool, str]:
    context = ToolContext(user_id=user, run_id=f"run_{user}", conversation_id="c", tool_call_id="t")
    async with asyncio.timeout(10):
        output = await server.call("whoami", {}, context)
    return output.is_error, json.dumps(output.content)


def _sessions(server: McpServer) -> int:
    assert server.users is not None
    return len(server.users)


async def test_a_replaced_credential_takes_effect_at_the_next_call_on_a_new_session(
    forge: tuple[McpServer, Credentials], whoami: WhoamiServer
) -> None:
    server, credentials = forge
    credentials.by_user["alice"] = {"Authorization": "Bearer old"}
    assert await _call(server, "alice") == (False, json.dumps({"result": "Bearer old"}))
    credentials.by_user["alice"] = {"Authorization": "Bearer new"}
    assert "Bearer new" in (await _call(server, "alice"))[1]
    assert whoami.sessions_of("Bearer old").isdisjoint(whoami.sessions_of("Bearer new"))
    assert _sessions(server) == 1


async def test_a_deleted_credential_closes_the_session_and_the_call_says_how_to_connect(
    forge: tuple[McpServer, Credentials],
) -> None:
    server, credentials = forge
    credentials.by_user["alice"] = {"Authorization": "Bearer a"}
    await _call(server, "alice")
    del credentials.by_user["alice"]
    failed, text = await _call(server, "alice")
    assert failed and f"PUT {ROUTE}" in text
    assert _sessions(server) == 0


async def test_idle_sessions_are_closed_and_at_most_max_sessions_stay_open(
    forge: tuple[McpServer, Credentials], whoami: WhoamiServer
) -> None:
    server, credentials = forge
    assert server.users is not None
    for user in ("alice", "bob", "carol"):
        credentials.by_user[user] = {"Authorization": f"Bearer {user}"}
        await _call(server, user)
    assert _sessions(server) == 2  # alice's, the least recently used, was closed
    loop = asyncio.get_running_loop()
    assert server.users.sweep(now=loop.time()) == 0  # not idle yet
    assert server.users.sweep(now=loop.time() + server.config.session_idle) == 2
    await _call(server, "bob")
    assert len(whoami.sessions_of("Bearer bob")) == 2  # a new session after the idle one


async def test_a_credential_no_key_opens_any_more_is_a_tool_error_asking_to_connect_again(
    forge: tuple[McpServer, Credentials], whoami: WhoamiServer
) -> None:
    server, credentials = forge
    credentials.unreadable.add("alice")
    failed, text = await _call(server, "alice")
    assert failed and "cannot be read any more" in text and f"PUT {ROUTE}" in text
    assert whoami.calls == []
