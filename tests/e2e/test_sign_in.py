"""Signing in: a pasted token works, a bad one is refused."""

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
