"""Signing in: with a local account's password (a cookie session), or a pasted token."""

from __future__ import annotations

import pytest
from tests.conftest import Live, token
from tests.e2e.support import Browser, expect, new_context, send, wait_status

from parley.accounts import COOKIE, hash_password
from parley.store.accounts import Accounts


@pytest.mark.e2e
async def test_a_person_signs_in_with_a_password_chats_and_signs_out(
    browser: Browser, live: Live
) -> None:
    await Accounts(live.services.store).add("dana", hash_password("dana's password"))
    live.scripted.enqueue([{"text": "hello dana"}])
    context = await new_context(browser, live, user=None)
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto("/")
    await page.locator("#signin-user").fill("dana")
    await page.locator("#signin-password").fill("not it")
    await page.locator("#signin-submit").click()
    await expect(page.locator("#signin-error")).to_have_text("Wrong user name or password.")
    await expect(page.locator("#app")).to_be_hidden()

    await page.locator("#signin-password").fill("dana's password")
    await page.locator("#signin-submit").click()
    await expect(page.locator("#me")).to_have_text("dana")
    [cookie] = [c for c in await context.cookies() if c["name"] == COOKIE]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert await page.evaluate("document.cookie") == ""  # the page's scripts never see it
    await send(page, "hello")
    await wait_status(page, "complete")
    await expect(page.locator(".msg-assistant").last).to_contain_text("hello dana")
    await page.reload()
    await expect(page.locator("#me")).to_have_text("dana")

    await page.locator("#signout").click()
    await expect(page.locator("#signin")).to_be_visible()
    await page.reload()
    await expect(page.locator("#signin")).to_be_visible()
    await context.close()
    convos, _ = await live.services.store.list_conversations("dana", limit=5)
    assert [c.title for c in convos] == ["hello"]
    assert errors == []


@pytest.mark.e2e
async def test_a_pasted_token_signs_in_and_a_bad_one_is_refused(
    browser: Browser, live: Live
) -> None:
    context = await new_context(browser, live, user=None)
    page = await context.new_page()
    await page.goto("/")
    await expect(page.locator("#signin")).to_be_visible()
    await page.locator("#signin-with-token summary").click()
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
