"""A conversation of 1,200 messages opens fast, loads older pages on scroll up, and the page keeps
a bounded number of message nodes however far it goes."""

from __future__ import annotations

from datetime import timedelta

import pytest
from tests.conftest import Live
from tests.e2e.support import Page, expect, shoot

from parley.chat.ids import new_id
from parley.store.tables import Message, utcnow

pytestmark = pytest.mark.e2e

COUNT = 1_200
MAX_NODES = 160  # messages.js MAX_NODES


async def _seed(live: Live, count: int) -> str:
    store = live.services.store
    convo = await store.create_conversation("alice", title="A very long chat")
    start = utcnow() - timedelta(hours=1)
    rows: list[Message] = []
    parent: str | None = None
    for i in range(count):
        role = "user" if i % 2 == 0 else "assistant"
        text = f"message {i}"
        when = start + timedelta(milliseconds=i)
        rows.append(
            Message(
                id=new_id("msg"),
                conversation_id=convo.id,
                user_id="alice",
                parent_id=parent,
                depth=i,
                role=role,
                parts=[{"type": "text", "text": text}],
                text=text,
                status="complete",
                created_at=when,
                updated_at=when,
            )
        )
        parent = rows[-1].id
    async with store.sessions() as session, session.begin():
        session.add_all(rows)
    await store.update_conversation("alice", convo.id, {"active_leaf_id": parent})
    return convo.id


async def test_older_messages_load_on_scroll_up_and_the_dom_stays_bounded(
    page: Page, live: Live
) -> None:
    cid = await _seed(live, COUNT)
    await page.goto(f"/#/c/{cid}")
    await expect(page.locator(".msg").last).to_contain_text(f"message {COUNT - 1}")
    assert await page.evaluate("window.parley.domCount()") <= 50
    await shoot(page, "12-long-conversation")

    most = 0
    for _ in range(200):
        await page.evaluate("document.getElementById('scroller').scrollTop = 0")
        await page.wait_for_timeout(60)
        most = max(most, await page.evaluate("window.parley.domCount()"))
        if await page.locator(".msg .bubble").first.inner_text() == "message 0":
            break
    else:
        pytest.fail("never reached the first message by scrolling up")
    assert await page.evaluate("window.parley.loaded()") == COUNT
    assert most <= MAX_NODES

    for _ in range(200):
        await page.evaluate(
            "const s = document.getElementById('scroller'); s.scrollTop = s.scrollHeight"
        )
        await page.wait_for_timeout(40)
        most = max(most, await page.evaluate("window.parley.domCount()"))
        if await page.locator(".msg .md").last.inner_text() == f"message {COUNT - 1}":
            break
    assert most <= MAX_NODES
    await expect(page.locator(".msg").last).to_contain_text(f"message {COUNT - 1}")
