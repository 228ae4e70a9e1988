"""``PARLEY_AUTH=none``: the page asks for no sign-in; with tokens it still does."""

from __future__ import annotations

import pytest
from tests.conftest import Live
from tests.e2e.support import Browser, expect, last_reply, new_context, send, wait_status


@pytest.mark.e2e
@pytest.mark.parametrize("settings_overrides", [{"auth": "none", "auth_none_user": "me"}])
async def test_single_user_mode_opens_the_chat_with_no_sign_in(
    browser: Browser, live: Live
) -> None:
    context = await new_context(browser, live, user=None)
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto("/")
    await expect(page.locator("#app")).to_be_visible()
    await expect(page.locator("#signin")).to_be_hidden()
    await expect(page.locator("#signout")).to_be_hidden()
    await expect(page.locator("#me")).to_have_text("local user")
    live.scripted.enqueue([{"text": "Hello, me."}])
    await send(page, "Hi")
    await wait_status(page, "complete")
    await expect(last_reply(page)).to_contain_text("Hello, me.")
    await context.close()
    assert errors == []
    convos, _ = await live.services.store.list_conversations("me", limit=5)
    assert len(convos) == 1 and convos[0].user_id == "me"


@pytest.mark.e2e
async def test_with_tokens_a_page_without_one_still_asks_to_sign_in(
    browser: Browser, live: Live
) -> None:
    context = await new_context(browser, live, user=None)
    page = await context.new_page()
    await page.goto("/")
    await expect(page.locator("#signin")).to_be_visible()
    await expect(page.locator("#app")).to_be_hidden()
    await context.close()
