"""Signing in: a pasted token works, a bad one is refused; dev tokens exist only in dev mode."""

from __future__ import annotations

import pytest
from tests.conftest import Live, token
from tests.e2e.support import Browser, expect, new_context


@pytest.mark.e2e
async def test_a_pasted_token_signs_in_and_a_bad_one_is_refused(
    browser: Browser, live: Live
) -> None:
    context = await new_context(browser, live, user=None)
    page = await context.new_page()
    await page.goto("/")
    await expect(page.locator("#signin")).to_be_visible()
    await expect(page.locator("#signin-dev")).to_be_hidden()
    await page.locator("#signin-token").fill("not-a-token")
    await page.locator("#signin-submit").click()
    await expect(page.locator("#signin-error")).to_contain_text("refused")

    await page.locator("#signin-token").fill(token("carol"))
    await page.locator("#signin-submit").click()
    await expect(page.locator("#app")).to_be_visible()
    await expect(page.locator("#me")).to_have_text("carol")
    await page.reload()
    await expect(page.locator("#me")).to_have_text("carol")
    await page.locator("#signout").click()
    await expect(page.locator("#signin")).to_be_visible()
    await context.close()


async def test_dev_tokens_do_not_exist_when_a_secret_is_configured(live: Live) -> None:
    async with live.client(user=None) as http:
        assert (await http.get("/api/dev/token", params={"user": "eve"})).status_code == 404
        assert (await http.get("/api/dev")).status_code == 404
