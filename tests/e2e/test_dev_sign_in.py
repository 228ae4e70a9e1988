"""Dev mode: with parley's own local secret on loopback, the page offers one-click sign-in."""

from __future__ import annotations

from typing import Any

import pytest
from tests.conftest import Live
from tests.e2e.support import Browser, expect, new_context, send, shoot, wait_status

from parley.providers.scripted import ScriptedProvider


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"jwt_secret": None}


@pytest.mark.e2e
async def test_the_dev_button_signs_in_as_the_named_user(
    browser: Browser, live: Live, scripted: ScriptedProvider
) -> None:
    scripted.enqueue([{"text": "hi bob"}])
    context = await new_context(browser, live, user=None)
    page = await context.new_page()
    await page.goto("/")
    await expect(page.locator("#signin-dev")).to_be_visible()
    await shoot(page, "00-sign-in")
    await page.locator("#signin-dev-user").fill("bob")
    await page.locator("#signin-dev-button").click()
    await expect(page.locator("#me")).to_have_text("bob")
    await send(page, "hello")
    await wait_status(page, "complete")
    await context.close()
    convos = await live.services.store.list_conversations("bob", limit=5)
    assert [c.title for c in convos[0]] == ["hello"]


async def test_a_dev_token_works_and_proxied_requests_get_none(live: Live) -> None:
    async with live.client(user=None) as http:
        assert (await http.get("/api/dev")).json() == {"dev_tokens": True}
        proxied = await http.get(
            "/api/dev/token", params={"user": "dave"}, headers={"X-Forwarded-For": "203.0.113.9"}
        )
        assert proxied.status_code == 404
        assert (await http.get("/api/dev/token", params={"user": "no spaces"})).status_code == 422
        issued = (await http.get("/api/dev/token", params={"user": "dave"})).json()
        assert issued["user"] == "dave"
        mine = await http.get(
            "/api/conversations", headers={"Authorization": f"Bearer {issued['token']}"}
        )
    assert mine.status_code == 200
