"""Helpers for the browser tests: Chromium's launch options, contexts, screenshots, chat steps."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.conftest import Live, token

try:
    from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect
except ImportError:  # pragma: no cover - depends on the machine; the fixtures skip then
    Browser = BrowserContext = Page = Any  # type: ignore[misc,assignment]
    async_playwright = expect = None  # type: ignore[assignment]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
DESKTOP = {"width": 1280, "height": 820}


def why_not() -> str | None:
    if async_playwright is None:
        return "playwright is not installed (pip install -e '.[dev]'; never `playwright install`)"
    if not CHROMIUM.exists():
        return "/usr/bin/chromium is missing (apt-get install -y chromium)"
    return None


async def new_context(
    browser: Browser, live: Live, *, user: str | None = "alice", **options: Any
) -> BrowserContext:
    """A browser context on the live server; signed in as ``user`` (None: signed out)."""
    options.setdefault("viewport", DESKTOP)
    context = await browser.new_context(base_url=live.url, **options)
    context.set_default_timeout(10_000)
    if user is not None:
        script = f"localStorage.setItem('parley.token', {json.dumps(token(user))});"
        await context.add_init_script(script)
    return context


async def shoot(page: Page, name: str) -> Path:
    """Save a screenshot of the page's current state to test-artifacts/NAME.png."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=str(path))
    return path


def last_reply(page: Page) -> Any:
    """The newest assistant message on the page (a Playwright locator)."""
    return page.locator(".msg-assistant").last


async def send(page: Page, text: str) -> None:
    """Type a message in the composer and press Enter."""
    await page.locator("#input").fill(text)
    await page.locator("#input").press("Enter")


async def wait_status(page: Page, status: str) -> None:
    """Wait until the newest reply has ``status`` (complete, cancelled, error, streaming...)."""
    await page.wait_for_function(
        "s => { const all = document.querySelectorAll('.msg-assistant');"
        " return all.length && all[all.length - 1].dataset.status === s; }",
        arg=status,
    )
