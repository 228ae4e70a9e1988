"""A browser's own ``EventSource`` follows a run with a ticket (``POST /api/runs/{id}/ticket``):
it cannot send ``Authorization``, so without a ticket the stream is refused; with one it gets the
run's events, and when its connection is cut mid-run it reconnects by itself with
``Last-Event-ID`` and continues where it stopped, repeating nothing.

Chromium's offline emulation leaves an open loopback stream alone, so the cut is made by a TCP
relay between the browser and parley."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from tests.conftest import Live
from tests.e2e.support import Browser, BrowserContext, Page, new_context
from tests.support.sse import collect

pytestmark = pytest.mark.e2e

FOLLOW = """
url => {
  window.seen = [];
  window.opened = 0;
  window.errors = 0;
  const source = new EventSource(url);
  window.source = source;
  source.onopen = () => { window.opened += 1; };
  source.onerror = () => { window.errors += 1; };
  for (const kind of ['start', 'content', 'done']) {
    source.addEventListener(kind, (e) => {
      window.seen.push({ id: e.lastEventId, type: kind, data: JSON.parse(e.data) });
      if (kind === 'done') source.close();
    });
  }
}
"""


class Relay:
    """A TCP relay in front of the live server; ``cut()`` resets every connection through it."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = ""
        self._open: list[asyncio.StreamWriter] = []

    async def serve(self) -> asyncio.Server:
        server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        return server

    def cut(self) -> None:
        for writer in self._open:
            writer.transport.abort()
        self._open.clear()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.port)
        self._open += [writer, up_writer]
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    @classmethod
    def of(cls, live: Live) -> Relay:
        return cls(int(live.url.rsplit(":", 1)[1]))


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    writer.transport.abort()


@pytest.fixture
async def relay(live: Live) -> AsyncIterator[Relay]:
    relay = Relay.of(live)
    server = await relay.serve()
    yield relay
    relay.cut()
    server.close()
    await server.wait_closed()


@pytest.fixture
async def context(browser: Browser, live: Live, relay: Relay) -> AsyncIterator[BrowserContext]:
    """A signed-out browser on the page's origin (through the relay): nothing but the URL
    authorizes the stream."""
    opened = await new_context(browser, dataclasses.replace(live, url=relay.url), user=None)
    yield opened
    await opened.close()


async def _page(context: BrowserContext) -> Page:
    page = await context.new_page()
    await page.goto("/")
    return page


async def _start_waiting_run(http: httpx.AsyncClient, live: Live) -> str:
    """A run that has said "Hello " and waits for the gate ``go`` before "world."."""
    live.scripted.enqueue([{"text": "Hello "}, {"wait": "go"}, {"text": "world."}])
    cid = (await http.post("/api/conversations", json={})).json()["id"]
    response, _ = await collect(
        http,
        "POST",
        f"/api/conversations/{cid}/messages",
        json_body={"content": "hi"},
        stop_after="content",
    )
    run_id: str = response.headers["x-run-id"]
    return run_id


async def _ticket(http: httpx.AsyncClient, run_id: str) -> str:
    response = await http.post(f"/api/runs/{run_id}/ticket")
    assert response.status_code == 200, response.text
    ticket: str = response.json()["ticket"]
    return ticket


async def test_without_a_ticket_the_browsers_event_source_is_refused(
    live: Live, context: BrowserContext
) -> None:
    page = await _page(context)
    async with live.client() as http:
        run_id = await _start_waiting_run(http, live)
        events = f"/api/runs/{run_id}/events"
        async with page.expect_response(lambda r: events in r.url) as refused:
            await page.evaluate(FOLLOW, events)
        await page.wait_for_function("() => window.source.readyState === EventSource.CLOSED")
        live.scripted.release("go")
        await live.services.runs.wait(run_id)

    assert (await refused.value).status == 401
    assert await page.evaluate("window.seen") == []


async def test_the_browser_follows_a_run_by_ticket_and_resumes_after_a_cut(
    live: Live, context: BrowserContext, relay: Relay
) -> None:
    page = await _page(context)
    requests: list[dict[str, str]] = []

    async def record(request: Any) -> None:
        if "/events" in request.url:
            requests.append(await request.all_headers())

    page.on("request", record)
    async with live.client() as http:
        run_id = await _start_waiting_run(http, live)
        ticket = await _ticket(http, run_id)
        await page.evaluate(FOLLOW, f"/api/runs/{run_id}/events?ticket={ticket}")
        await page.wait_for_function("() => window.seen.some(e => e.type === 'content')")

        relay.cut()  # the connection drops mid-run
        await page.wait_for_function("() => window.errors > 0")
        live.scripted.release("go")
        await page.wait_for_function("() => window.source.readyState === EventSource.CLOSED")
        await live.services.runs.wait(run_id)
        _, expected = await collect(http, "GET", f"/api/runs/{run_id}/events")

    seen = await page.evaluate("window.seen")
    kinds = ("start", "content", "done")
    wire = [{"id": e.id, "type": e.event, "data": e.data} for e in expected if e.event in kinds]
    assert seen == wire  # every event once, in order
    assert "".join(e["data"]["content"] for e in seen if e["type"] == "content") == "Hello world."
    assert await page.evaluate("window.opened") >= 2
    hello = next(e for e in seen if e["type"] == "content")
    assert "last-event-id" not in requests[0]
    assert requests[-1]["last-event-id"] == hello["id"]
