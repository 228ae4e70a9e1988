"""The web page in a real Chromium (Debian's, at /usr/bin/chromium) driven by Playwright, against a
live parley with the scripted provider. Skips, saying why, when Chromium or Playwright is missing.

Screenshots go to test-artifacts/ (git-ignored).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from tests.conftest import Live
from tests.e2e.support import (
    CHROMIUM,
    CHROMIUM_ARGS,
    Browser,
    Page,
    async_playwright,
    new_context,
    why_not,
)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    reason = why_not()
    if reason:
        pytest.skip(reason)
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def page(browser: Browser, live: Live) -> AsyncIterator[Page]:
    """The chat page, signed in as alice, with page errors turned into test failures."""
    context = await new_context(browser, live)
    opened = await context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda exc: errors.append(str(exc)))
    await opened.goto("/")
    await opened.wait_for_selector("#app:not([hidden])")
    yield opened
    await context.close()
    assert errors == [], f"the page threw: {errors}"
