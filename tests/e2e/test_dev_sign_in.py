"""Dev mode: the page opened with the sign-in link ``parley serve`` printed ends signed in, once."""

from __future__ import annotations

import json
from typing import Any

import pytest
from tests.conftest import Live
from tests.e2e.support import Browser, expect, new_context, send, shoot, wait_status

from parley import signin
from parley.auth import issue_token
from parley.config import ensure_jwt_secret
from parley.providers.scripted import ScriptedProvider


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"jwt_secret": None}


@pytest.mark.e2e
async def test_the_sign_in_link_signs_the_page_in_and_works_once(
    browser: Browser, live: Live, scripted: ScriptedProvider
) -> None:
    scripted.enqueue([{"text": "hi bob"}])
    code = await signin.issue(live.services.store, "bob")
    context = await new_context(browser, live, user=None)
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(f"/?signin={code}")
    await expect(page.locator("#me")).to_have_text("bob")
    assert "signin" not in page.url
    await send(page, "hello")
    await wait_status(page, "complete")
    await page.reload()
    await expect(page.locator("#me")).to_have_text("bob")
    await context.close()
    convos = await live.services.store.list_conversations("bob", limit=5)
    assert [c.title for c in convos[0]] == ["hello"]

    again = await new_context(browser, live, user=None)
    page = await again.new_page()
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(f"/?signin={code}")
    await expect(page.locator("#signin-error")).to_contain_text("was used, has expired or is wrong")
    await expect(page.locator("#app")).to_be_hidden()
    assert "signin" not in page.url
    await shoot(page, "00-sign-in")
    await again.close()
    assert errors == []


@pytest.mark.e2e
async def test_a_used_link_leaves_a_signed_in_page_signed_in(browser: Browser, live: Live) -> None:
    context = await new_context(browser, live, user=None)
    alice = issue_token(ensure_jwt_secret(live.services.settings), "alice")
    await context.add_init_script(f"localStorage.setItem('parley.token', {json.dumps(alice)});")
    page = await context.new_page()
    await page.goto("/?signin=not-a-code")
    await expect(page.locator("#me")).to_have_text("alice")
    await expect(page.locator(".toast-error")).to_contain_text("sign-in link")
    await context.close()
