"""``PARLEY_AUTH=none``: one local user for every request and socket, with or without a token;
refused beyond loopback unless ``PARLEY_AUTH_NONE_PUBLIC=true`` says that is meant."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import Live, auth, make_settings
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from parley.app import build_services
from parley.config import Settings, check_single_user
from parley.errors import ConfigError

SINGLE_USER = {"auth": "none", "auth_none_user": "me"}
single_user = pytest.mark.parametrize("settings_overrides", [SINGLE_USER])


@single_user
async def test_every_request_is_the_local_user_with_no_token_a_bad_one_or_anothers(
    live: Live,
) -> None:
    headers: list[dict[str, str]] = [{}, {"Authorization": "Bearer not-a-jwt"}, auth("alice")]
    async with live.client(None) as http:
        for given in headers:
            created = await http.post("/api/conversations", json={}, headers=given)
            assert created.status_code == 201, created.text
        listed = (await http.get("/api/conversations")).json()
        own = await http.get("/api/me/tasks")
        other = await http.get("/api/alice/tasks")
        live.scripted.enqueue([{"text": "Hi me."}])
        cid = listed["items"][0]["id"]
        sent = await http.post(
            f"/api/conversations/{cid}/messages", json={"content": "hi", "stream": False}
        )
    assert sent.status_code == 200, sent.text
    assert len(listed["items"]) == 3
    for item in listed["items"]:
        assert (await live.services.store.get_conversation("me", item["id"])).user_id == "me"
    assert (own.status_code, other.status_code) == (200, 403)


@single_user
async def test_the_progress_socket_is_the_local_users_without_a_token(live: Live) -> None:
    base = live.url.replace("http://", "ws://")
    async with connect(f"{base}/ws/me/chat", open_timeout=5) as ws:
        hello = json.loads(await ws.recv())
    assert (hello["event_type"], hello["result"]) == ("connection_established", "me")
    async with connect(f"{base}/ws/alice/chat", open_timeout=5) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403


@pytest.mark.parametrize(
    ("settings", "host", "refused"),
    [
        ({"auth": "none"}, "0.0.0.0", True),
        ({"auth": "none"}, "192.168.1.10", True),
        ({"auth": "none"}, "127.0.0.1", False),
        ({"auth": "none"}, "localhost", False),
        ({"auth": "none"}, "::1", False),
        ({"auth": "none", "auth_none_public": True}, "0.0.0.0", False),
        ({"auth": "jwt"}, "0.0.0.0", False),
    ],
)
def test_single_user_mode_is_for_loopback_unless_public_is_said(
    settings: dict[str, Any], host: str, refused: bool
) -> None:
    if refused:
        with pytest.raises(ConfigError, match="PARLEY_AUTH_NONE_PUBLIC=true"):
            check_single_user(Settings(**settings), host)
    else:
        check_single_user(Settings(**settings), host)


async def test_the_app_refuses_to_start_with_it_on_a_public_host(
    tmp_path: Path, sqlite_url: str
) -> None:
    settings = make_settings(tmp_path, sqlite_url, host="0.0.0.0", **SINGLE_USER)
    with pytest.raises(ConfigError, match="act as user 'me'"):
        await build_services(settings)
