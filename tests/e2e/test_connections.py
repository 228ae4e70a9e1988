"""The page's "Tool servers" dialog (issue 26): a person connects the MCP servers that act as
them, pasting a token for a per-user server and signing in through the server's own page for an
OAuth one (a real OAuth-protected MCP server, the SDK's own authorization server), and
disconnects."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from tests.conftest import Live
from tests.e2e.support import Page, expect
from tests.fakes.mcp_oauth import LOGIN_HEADER, OAuthWhoami, serve_oauth_whoami

pytestmark = pytest.mark.e2e


@pytest.fixture
async def oauth() -> AsyncIterator[OAuthWhoami]:
    async with serve_oauth_whoami() as server:
        yield server


@pytest.fixture
def settings_overrides(oauth: OAuthWhoami) -> dict[str, Any]:
    forge = {"name": "forge", "url": oauth.url, "credentials": "oauth"}
    keyed = {"name": "keyed", "url": oauth.url, "credentials": "per_user"}
    return {"secret_key": "e2e-connections-" + "k" * 32, "mcp_servers": [forge, keyed]}


async def test_a_person_connects_a_token_server_and_an_oauth_server_then_disconnects(
    page: Page, live: Live
) -> None:
    await page.locator("#connections").click()
    dialog = page.locator("#connections-dialog")
    forge, keyed = (dialog.locator(f'.rule[data-server="{n}"]') for n in ("forge", "keyed"))
    await expect(forge.locator(".connection-state")).to_contain_text("not connected")
    await expect(keyed.locator(".connection-state")).to_contain_text("takes your token")

    await keyed.get_by_label("Token for keyed").fill("alice-own-token")
    await keyed.get_by_role("button", name="Connect").click()
    await expect(keyed.locator(".connection-state")).to_contain_text("connected as you")
    assert await live.services.credentials.headers("alice", "keyed") == {
        "Authorization": "Bearer alice-own-token"
    }

    # the authorization server signs in whoever this header names (a person typing a password)
    await page.context.set_extra_http_headers({LOGIN_HEADER: "alice"})
    async with page.context.expect_page() as opened:
        await forge.get_by_role("button", name="Connect forge").click()
    tab = await opened.value
    await expect(tab.locator("body")).to_contain_text("parley is connected to the MCP server forge")
    await expect(forge.locator(".connection-state")).to_contain_text("connected as you")
    grant = await live.services.credentials.grant("alice", "forge")
    assert grant is not None and grant.tokens is not None

    await forge.get_by_role("button", name="Disconnect forge").click()
    await expect(forge.locator(".connection-state")).to_contain_text("not connected")
    assert await live.services.credentials.grant("alice", "forge") is None
