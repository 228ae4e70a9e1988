"""What the chat page shows (issue 25): math typeset by KaTeX, code blocks' labels, search results
with where they matched, whole titles in the list, the "jump to latest" arrow after a fork."""

from __future__ import annotations

import re

import pytest
from tests.conftest import Live
from tests.e2e.support import Page, expect, last_reply, send, shoot, wait_status
from tests.e2e.test_long_conversation import _seed

from parley.providers.scripted import ScriptedProvider

pytestmark = pytest.mark.e2e

MATH = (
    "Inline $E = mc^2$ and \\(a^2 + b^2 = c^2\\).\n\n"
    "$$\\int_0^1 x^2\\,dx = \\frac{1}{3}$$\n\n"
    "\\[\\sum_{n=1}^{\\infty} \\frac{1}{n^2} = \\frac{\\pi^2}{6}\\]\n\n"
    "Prices: $5 and $10 stay text. `$a$ stays code`\n\n"
    "```\n$$x$$ in a code block\n```\n\n"
    '<span id="styled" style="position:fixed;inset:0;background:red">styled</span> '
    '<img src="/nothing-here" onerror="window.__pwned = 1"> '
    "$\\href{javascript:window.__pwned=2}{click}$"
)


async def test_math_is_typeset_outside_code_and_the_reply_stays_sanitised(
    page: Page, live: Live, scripted: ScriptedProvider
) -> None:
    failed: list[str] = []
    page.on("response", lambda r: failed.append(r.url) if r.status >= 400 else None)
    scripted.enqueue([{"text": MATH}])
    await send(page, "some math please")
    await wait_status(page, "complete")
    md = last_reply(page).locator(".md")
    await expect(md.locator(".katex")).to_have_count(5)
    await expect(md.locator(".katex-display")).to_have_count(2)
    await expect(md.locator(".math-inline .katex-html").first).to_contain_text("E=mc")
    await expect(md.locator(".katex-display .mfrac").first).to_be_visible()
    await expect(md.locator(".katex .strut").first).to_have_attribute(
        "style", re.compile(r"^height:[\d.]+em")
    )
    await expect(md.locator("p", has_text="Prices")).to_contain_text(
        "Prices: $5 and $10 stay text."
    )
    await expect(md.locator("p code")).to_have_text("$a$ stays code")
    await expect(md.locator("pre")).to_have_text("$$x$$ in a code block\n")
    await expect(md.locator("code .katex, pre .katex")).to_have_count(0)
    await page.wait_for_function(
        "[...document.fonts].some(f => f.family === 'KaTeX_Main' && f.status === 'loaded')"
    )

    await expect(md.locator("#styled")).to_have_text("styled")
    assert await md.locator("#styled").get_attribute("style") is None
    await expect(md.locator(".katex a, a[href^='javascript']")).to_have_count(0)  # no \href
    await expect(md.locator("a.image-link")).to_have_count(1)  # the image that failed
    await expect(md.locator(".katex", has_text="\\href")).to_have_count(1)
    assert await page.evaluate("window.__pwned") is None
    await shoot(page, "20-math")

    await page.reload()
    await expect(last_reply(page).locator(".md .katex")).to_have_count(5)
    assert [u for u in failed if "/static/" in u] == []


async def test_a_code_block_without_a_language_gets_no_label(
    page: Page, live: Live, scripted: ScriptedProvider
) -> None:
    scripted.enqueue(
        [
            {
                "text": "```\nSELECT name, email FROM users WHERE id = 1 ORDER BY name;\n```\n\n"
                "```\nJust some words in a block, not code at all.\n```\n\n"
                "```Python\nprint('hi')\n```\n"
            }
        ]
    )
    await send(page, "code please")
    await wait_status(page, "complete")
    blocks = last_reply(page).locator(".code")
    await expect(blocks).to_have_count(3)
    await expect(blocks.locator(".code-head span")).to_have_text(["", "", "Python"])
    await expect(blocks.nth(0).locator(".hljs-keyword").first).to_have_text("SELECT")
    await expect(blocks.nth(2).locator(".hljs-built_in")).to_have_text("print")


async def _conversation(live: Live, title: str, *texts: str) -> str:
    store = live.services.store
    convo = await store.create_conversation("alice", title=title)
    parent = None
    for i, text in enumerate(texts):
        role = "user" if i % 2 == 0 else "assistant"
        parts = [{"type": "text", "text": text}]
        message = await store.add_message(
            "alice", convo.id, role=role, parts=parts, parent_id=parent
        )
        parent = message.id
    return convo.id


async def test_search_results_show_where_they_matched(page: Page, live: Live) -> None:
    trip = await _conversation(
        live,
        "Trip planning",
        "Where should we go in June?",
        "Some islands first. " * 30 + "Then book the Ferry to Naxos on Tuesday, it sells out. "
        "After that, " + "more plans. " * 30,
    )
    await _conversation(live, "Ferry timetables", "nothing about boats here")
    await _conversation(live, "Groceries", "milk and bread")
    await page.reload()
    await page.locator("#search").fill("ferry")
    rows = page.locator("#conversations .conv")
    await expect(rows.locator(".conv-title")).to_have_text(["Ferry timetables", "Trip planning"])
    snippet = page.locator(f'.conv[data-id="{trip}"] .conv-snippet')
    await expect(snippet).to_contain_text("Reply: ")
    await expect(snippet).to_contain_text("Then book the Ferry to Naxos on Tuesday")
    await expect(snippet.locator("mark")).to_have_text("Ferry")
    await expect(rows.first.locator(".conv-snippet")).to_have_count(0)  # its title matched
    await shoot(page, "21-search-snippets")
    await page.locator("#search").fill("")
    await expect(rows).to_have_count(3)
    await expect(page.locator(".conv-snippet")).to_have_count(0)


FITS = (
    "el => el.scrollHeight <= el.clientHeight + 1 && el.scrollWidth <= el.clientWidth + 1"
    " && el.getBoundingClientRect().width >= 0.85 * el.closest('.conv').clientWidth - 16"
)


async def test_sidebar_titles_use_the_whole_row_on_two_lines(page: Page, live: Live) -> None:
    medium = "Migrating the billing database to PostgreSQL 17"
    long = "A very long title: " + "with many words that go on and on " * 6
    await _conversation(live, medium, "hi")
    await _conversation(live, long, "hi")
    await page.reload()
    row = page.locator(".conv", has_text="Migrating")
    title = row.locator(".conv-title")
    await expect(title).to_have_text(medium)
    assert await title.evaluate(FITS), "a two-line title is cut"
    assert await title.evaluate("el => el.getClientRects().length && el.clientHeight > 25")
    acts = row.locator(".conv-acts")
    await expect(acts).to_have_css("opacity", "0")  # over the title's end only when hovered
    await row.hover()
    await expect(acts).to_have_css("opacity", "1")

    clamped = page.locator(".conv", has_text="A very long title")
    await expect(clamped.locator(".conv-open")).to_have_attribute("title", long)
    assert await clamped.locator(".conv-title").evaluate("el => el.scrollHeight > el.clientHeight")
    await shoot(page, "22-sidebar-titles")


async def test_no_jump_arrow_after_forking_from_a_message_scrolled_up_to(
    page: Page, live: Live
) -> None:
    cid = await _seed(live, 30)
    await page.goto(f"/#/c/{cid}")
    await expect(page.locator(".msg").last).to_contain_text("message 29")
    first_reply = page.locator(".msg-assistant", has_text="message 1").first
    # the thread may still redraw after it opens: scroll_into_view_if_needed fails on a node
    # replaced under it ("not attached"), evaluate acts on the node the locator finds now
    await first_reply.evaluate("node => node.scrollIntoView({block: 'start'})")
    await page.mouse.wheel(0, -100)
    await expect(page.locator("#jump")).to_be_visible()
    await first_reply.hover()
    await first_reply.locator('[data-act="fork"]').click()
    await expect(page.locator(".toast", has_text="Forked")).to_be_visible()
    await expect(page.locator(".msg")).to_have_count(2)
    await expect(page.locator("#jump")).to_be_hidden()
