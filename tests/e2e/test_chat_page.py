"""The chat page in a real browser: streaming, tools and approvals, stop, branches, reloads, safety."""

from __future__ import annotations

from typing import Any

import pytest
from tests.conftest import Live
from tests.e2e.support import Page, expect, last_reply, send, shoot, wait_status

from parley.providers.scripted import ScriptedProvider
from parley.tools.base import FunctionTool, ToolContext
from parley.tools.registry import ToolRegistry

pytestmark = pytest.mark.e2e


async def _messages(live: Live, cid: str) -> list[dict[str, Any]]:
    async with live.client() as http:
        body = (await http.get(f"/api/conversations/{cid}")).json()
    messages: list[dict[str, Any]] = body["messages"]
    return messages


def _conversation_id(page: Page) -> str:
    return page.url.split("#/c/")[1]


async def test_a_reply_streams_in_as_markdown_with_highlighted_code(
    page: Page, live: Live, scripted: ScriptedProvider
) -> None:
    scripted.enqueue(
        [
            {"text": ["Here is ", "**a bold** claim", " and a list:\n\n- one\n- two\n\n"]},
            {"wait": "rest"},
            {"text": ["```python\n", "def answer() -> int:\n", "    return 42\n", "```\n"]},
            {"usage": {"prompt_tokens": 11, "completion_tokens": 31}},
        ]
    )
    await send(page, "Explain with code")
    reply = last_reply(page)
    await expect(reply.locator(".md strong")).to_have_text("a bold")
    await expect(reply).to_have_attribute("data-status", "streaming")
    await expect(page.locator("#stop")).to_be_visible()
    await expect(page.locator(".msg-user .bubble")).to_have_text("Explain with code")
    await shoot(page, "01-streaming")

    scripted.release("rest")
    await wait_status(page, "complete")
    await expect(reply.locator(".md li")).to_have_count(2)
    await expect(reply.locator(".code .code-head span")).to_have_text("python")
    await expect(reply.locator(".code code .hljs-keyword").first).to_have_text("def")
    await expect(reply.locator(".usage")).to_have_text("42 tokens")
    await expect(page.locator("#convo-usage")).to_contain_text("42 tokens")
    await expect(page.locator("#send")).to_be_visible()
    await expect(page.locator("#title")).to_have_text("Explain with code")
    await shoot(page, "02-reply-complete")


async def test_a_tool_call_waits_for_approval_and_runs_once_approved(
    page: Page, live: Live, scripted: ScriptedProvider, tool_registry: ToolRegistry
) -> None:
    calls: list[dict[str, Any]] = []

    async def add_task(args: dict[str, Any], context: ToolContext) -> dict[str, Any]:
        calls.append(args)
        return {"id": 7, "title": args["title"], "user": context.user_id}

    tool_registry.register(FunctionTool("add_task", add_task, requires_approval=True))
    scripted.enqueue(
        [{"tool_call": {"name": "add_task", "arguments": {"title": "buy milk"}, "id": "call_1"}}],
        [{"text": "Added **buy milk** to your list."}],
    )
    await send(page, "Remind me to buy milk")
    card = page.locator('.tool[data-tool-call-id="call_1"]')
    await expect(card.locator(".approval")).to_be_visible()
    await expect(card.locator(".tool-name")).to_have_text("add_task")
    await expect(card.locator(".tool-state")).to_have_text("Needs your approval")
    await card.locator("summary").click()
    await expect(card.locator(".tool-body pre").first).to_contain_text('"title": "buy milk"')
    assert calls == []
    await shoot(page, "03-approval-required")

    await card.locator('button[data-action="approve"]').click()
    await wait_status(page, "complete")
    card = page.locator('.tool[data-tool-call-id="call_1"]')
    await expect(card).to_have_attribute("data-state", "output-available")
    await expect(card.locator(".approval")).to_have_count(0)
    await card.locator("summary").click()
    await expect(card.locator(".tool-body")).to_contain_text('"user": "alice"')
    await expect(last_reply(page).locator(".md strong")).to_have_text("buy milk")
    assert calls == [{"title": "buy milk"}]
    await shoot(page, "04-tool-approved")


async def test_deny_and_always_allow_answer_the_approval(
    page: Page, live: Live, scripted: ScriptedProvider, tool_registry: ToolRegistry
) -> None:
    calls: list[dict[str, Any]] = []

    async def delete_task(args: dict[str, Any], context: ToolContext) -> str:
        calls.append(args)
        return "deleted"

    tool_registry.register(FunctionTool("delete_task", delete_task, requires_approval=True))
    scripted.enqueue(
        [{"tool_call": {"name": "delete_task", "arguments": {"task_id": 1}, "id": "call_a"}}],
        [{"text": "Fine, I left it."}],
        [{"tool_call": {"name": "delete_task", "arguments": {"task_id": 2}, "id": "call_b"}}],
        [{"text": "Deleted."}],
        [{"tool_call": {"name": "delete_task", "arguments": {"task_id": 3}, "id": "call_c"}}],
        [{"text": "Deleted again, without asking."}],
    )
    await send(page, "delete task 1")
    await page.locator('.tool[data-tool-call-id="call_a"] button[data-action="deny"]').click()
    await wait_status(page, "complete")
    await expect(page.locator('.tool[data-tool-call-id="call_a"]')).to_have_attribute(
        "data-state", "output-denied"
    )
    assert calls == []

    await send(page, "delete task 2")
    await page.locator('.tool[data-tool-call-id="call_b"] button[data-action="always"]').click()
    await wait_status(page, "complete")
    assert calls == [{"task_id": 2}]
    async with live.client() as http:
        rules = (await http.get("/api/approval-rules")).json()["items"]
    assert [(r["scope"], r["name"]) for r in rules] == [("tool", "delete_task")]

    await send(page, "delete task 3")
    await wait_status(page, "complete")
    await expect(last_reply(page)).to_contain_text("without asking")
    assert calls == [{"task_id": 2}, {"task_id": 3}]


async def test_stop_cancels_the_run_and_keeps_the_partial_reply(
    page: Page, live: Live, scripted: ScriptedProvider
) -> None:
    scripted.enqueue([{"text": "Thinking about it slowly "}, {"wait": "never"}])
    await send(page, "Take your time")
    await expect(last_reply(page).locator(".md")).to_have_text("Thinking about it slowly")
    await page.locator("#stop").click()
    await wait_status(page, "cancelled")
    await expect(last_reply(page).locator(".badge-cancelled")).to_have_text("Stopped")
    await expect(page.locator("#send")).to_be_visible()
    await shoot(page, "05-stopped")
    stored = await _messages(live, _conversation_id(page))
    assert stored[-1]["status"] == "cancelled"
    assert stored[-1]["parts"][-1]["text"] == "Thinking about it slowly "


async def test_escape_stops_a_run_too(page: Page, live: Live, scripted: ScriptedProvider) -> None:
    scripted.enqueue([{"text": "partial"}, {"wait": "never"}])
    await send(page, "go")
    await expect(last_reply(page).locator(".md")).to_have_text("partial")
    await page.keyboard.press("Escape")
    await wait_status(page, "cancelled")


async def test_regenerate_adds_a_branch_and_the_switcher_walks_between_them(
    page: Page, live: Live, scripted: ScriptedProvider
) -> None:
    scripted.enqueue([{"text": "first answer"}], [{"text": "second answer"}])
    await send(page, "question")
    await wait_status(page, "complete")
    await last_reply(page).hover()
    await last_reply(page).locator('[data-act="regenerate"]').click()
    await wait_status(page, "complete")
    reply = last_reply(page)
    await expect(reply.locator(".md")).to_have_text("second answer")
    await expect(reply.locator(".branch-pos")).to_have_text("2/2")
    await expect(page.locator(".msg")).to_have_count(2)
    await shoot(page, "06-regenerated")

    await reply.locator('[data-act="left"]').click()
    await expect(last_reply(page).locator(".md")).to_have_text("first answer")
    await expect(last_reply(page).locator(".branch-pos")).to_have_text("1/2")
    await last_reply(page).locator('[data-act="right"]').click()
    await expect(last_reply(page).locator(".md")).to_have_text("second answer")


async def test_editing_a_message_branches_and_fork_copies_the_history(
    page: Page, live: Live, scripted: ScriptedProvider
) -> None:
    scripted.enqueue([{"text": "about cats"}], [{"text": "about dogs"}])
    await send(page, "tell me about cats")
    await wait_status(page, "complete")
    user = page.locator(".msg-user").last
    await user.hover()
    await user.locator('[data-act="edit"]').click()
    await page.locator(".edit-area").fill("tell me about dogs")
    await page.locator(".edit-area").press("Enter")
    await wait_status(page, "complete")
    await expect(last_reply(page).locator(".md")).to_have_text("about dogs")
    await expect(page.locator(".msg-user .bubble")).to_have_text("tell me about dogs")
    await expect(page.locator(".msg-user .branch-pos")).to_have_text("2/2")
    original = _conversation_id(page)

    await last_reply(page).locator('[data-act="fork"]').click()
    await page.wait_for_function("id => !location.hash.includes(id)", arg=original)
    await expect(page.locator("#title")).to_contain_text("(fork)")
    await expect(page.locator(".msg")).to_have_count(2)
    await expect(last_reply(page).locator(".md")).to_have_text("about dogs")
    await expect(page.locator(".conv")).to_have_count(2)


async def test_the_conversation_is_listed_after_a_reload_and_opens_again(
    page: Page, live: Live, scripted: ScriptedProvider
) -> None:
    scripted.enqueue([{"text": "Noted."}], [{"text": "Other."}])
    await send(page, "Remember the alamo")
    await wait_status(page, "complete")
    await page.locator("#new-chat").click()
    await send(page, "Something else")
    await wait_status(page, "complete")

    await page.reload()
    await expect(page.locator(".conv")).to_have_count(2)
    await expect(page.locator(".conv.active .conv-title")).to_have_text("Something else")
    await page.locator(".conv-open", has_text="Remember the alamo").click()
    await expect(page.locator(".msg-user .bubble")).to_have_text("Remember the alamo")
    await expect(last_reply(page).locator(".md")).to_have_text("Noted.")
    await shoot(page, "07-after-reload")

    await page.locator("#search").fill("alamo")
    await expect(page.locator(".conv")).to_have_count(1)
    await page.locator("#search").fill("")
    await expect(page.locator(".conv")).to_have_count(2)


async def test_rename_and_delete_from_the_list(
    page: Page, live: Live, scripted: ScriptedProvider
) -> None:
    scripted.enqueue([{"text": "ok"}])
    await send(page, "a chat to rename")
    await wait_status(page, "complete")
    row = page.locator(".conv").first
    await row.hover()
    await row.locator('button[title="Rename"]').click()
    await page.locator(".conv-rename").fill("Renamed chat")
    await page.locator(".conv-rename").press("Enter")
    await expect(page.locator(".conv-title")).to_have_text("Renamed chat")
    await expect(page.locator("#title")).to_have_text("Renamed chat")

    row = page.locator(".conv").first
    await row.hover()
    await row.locator('button[title="Delete"]').click()
    await row.locator("button", has_text="Delete").click()
    await expect(page.locator(".conv")).to_have_count(0)
    await expect(page.locator("#empty")).to_be_visible()
    async with live.client() as http:
        assert (await http.get("/api/conversations")).json()["items"] == []


async def test_model_output_never_runs_script_in_the_page(
    page: Page, live: Live, scripted: ScriptedProvider
) -> None:
    scripted.enqueue(
        [
            {
                "text": [
                    "Look: <script>window.__pwned=1</script>",
                    ' and <img src=x onerror="window.__pwned=2"> and ',
                    "[a link](javascript:window.__pwned=3) and ",
                    '<a href="#" onclick="window.__pwned=4">click</a> ',
                    '<svg onload="window.__pwned=5"></svg>',
                    '<iframe srcdoc="<script>parent.__pwned=6</script>"></iframe>',
                ]
            }
        ]
    )
    await send(page, "be evil")
    await wait_status(page, "complete")
    reply = last_reply(page)
    await expect(reply.locator(".md")).to_contain_text("Look:")
    for link in await reply.locator("a").all():
        await link.click(modifiers=["Alt"], no_wait_after=True)
    await page.wait_for_timeout(300)
    assert await page.evaluate("window.__pwned") is None
    assert await reply.locator("script, iframe, [onerror], [onload], [onclick]").count() == 0
    hrefs = [await a.get_attribute("href") for a in await reply.locator("a").all()]
    assert not any(h and h.startswith("javascript:") for h in hrefs)


async def test_a_dropped_stream_resumes_from_the_last_event_id(
    page: Page, live: Live, scripted: ScriptedProvider
) -> None:
    scripted.enqueue([{"text": ["one ", "two "]}, {"wait": "go"}, {"text": ["three"]}])
    resumed: list[dict[str, str]] = []
    page.on(
        "request",
        lambda r: (
            resumed.append(r.headers) if "/api/runs/" in r.url and "/events" in r.url else None
        ),
    )
    await send(page, "count")
    await expect(last_reply(page).locator(".md")).to_have_text("one two")
    async with page.expect_request(lambda r: r.url.endswith("/events")):
        await page.evaluate("window.parley.dropStream()")
        await expect(page.locator("#conn")).to_contain_text("reconnecting")
        await shoot(page, "08-reconnecting")
    await expect(page.locator("#conn")).to_contain_text("Reconnected")
    scripted.release("go")
    await wait_status(page, "complete")
    await expect(last_reply(page).locator(".md")).to_have_text("one two three")
    assert resumed and int(resumed[0]["last-event-id"]) >= 3


async def test_an_open_approval_is_shown_again_after_a_reload(
    page: Page, live: Live, scripted: ScriptedProvider, tool_registry: ToolRegistry
) -> None:
    async def ping(args: dict[str, Any], context: ToolContext) -> str:
        return "pong"

    tool_registry.register(FunctionTool("ping", ping, requires_approval=True))
    scripted.enqueue(
        [{"tool_call": {"name": "ping", "arguments": {}, "id": "call_p"}}], [{"text": "pong!"}]
    )
    await send(page, "ping please")
    await expect(page.locator(".approval")).to_be_visible()
    await page.reload()
    await expect(page.locator('.tool[data-tool-call-id="call_p"] .approval')).to_be_visible()
    await page.locator('button[data-action="approve"]').click()
    await wait_status(page, "complete")
    await expect(last_reply(page)).to_contain_text("pong!")


async def test_an_elicitation_becomes_a_form_and_the_answer_reaches_the_tool(
    page: Page, live: Live, scripted: ScriptedProvider, tool_registry: ToolRegistry
) -> None:
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "title": "Your name"},
            "guests": {"type": "integer", "minimum": 1, "title": "Guests"},
            "vegetarian": {"type": "boolean", "title": "Vegetarian"},
            "table": {"type": "string", "enum": ["inside", "terrace"], "title": "Table"},
        },
        "required": ["name", "guests"],
    }

    async def book(args: dict[str, Any], context: ToolContext) -> dict[str, Any]:
        action, content = await context.elicit("Who is the booking for?", schema)
        return {"action": action, "content": content}

    tool_registry.register(FunctionTool("book_table", book))
    scripted.enqueue(
        [{"tool_call": {"name": "book_table", "arguments": {}, "id": "call_e"}}],
        [{"text": "Booked."}],
    )
    await send(page, "book a table")
    form = page.locator(".elicit form")
    await expect(page.locator(".elicit-message")).to_have_text("Who is the booking for?")
    await form.get_by_label("Your name").fill("Ada")
    await form.get_by_label("Guests").fill("4")
    await form.get_by_label("Vegetarian").check()
    await form.get_by_label("Table").select_option(label="terrace")
    await shoot(page, "09-elicitation")
    await form.locator('button[type="submit"]').click()
    await wait_status(page, "complete")
    card = page.locator('.tool[data-tool-call-id="call_e"]')
    await card.locator("summary").click()
    result = card.locator(".tool-body pre").nth(1)
    await expect(result).to_contain_text('"name": "Ada"')
    await expect(result).to_contain_text('"guests": 4')
    await expect(result).to_contain_text('"vegetarian": true')
    await expect(result).to_contain_text('"table": "terrace"')


async def test_the_layout_works_on_a_phone(
    page: Page, live: Live, scripted: ScriptedProvider
) -> None:
    await page.set_viewport_size({"width": 390, "height": 800})
    scripted.enqueue([{"text": "Small screens work too."}])
    await expect(page.locator("#sidebar-open")).to_be_visible()
    await expect(page.locator("#sidebar")).not_to_be_in_viewport()
    await send(page, "hello from a phone")
    await wait_status(page, "complete")
    await shoot(page, "10-phone")
    await page.locator("#sidebar-open").click()
    await expect(page.locator("#sidebar")).to_be_in_viewport(ratio=1)
    await page.wait_for_timeout(300)  # the slide-in transition
    await shoot(page, "11-phone-sidebar")
    await page.locator(".conv-open").first.click()
    await expect(page.locator("#sidebar")).not_to_be_in_viewport()


async def test_the_composer_keys_shift_enter_is_a_new_line(
    page: Page, live: Live, scripted: ScriptedProvider
) -> None:
    scripted.enqueue([{"text": "two lines received"}])
    await page.locator("#input").click()
    await page.keyboard.type("line one")
    await page.keyboard.press("Shift+Enter")
    await page.keyboard.type("line two")
    await expect(page.locator(".msg")).to_have_count(0)
    await page.keyboard.press("Enter")
    await wait_status(page, "complete")
    await expect(page.locator(".msg-user .bubble")).to_have_text("line one\nline two")
    assert scripted.requests[0].messages[-1].content == "line one\nline two"


@pytest.fixture
def settings_overrides(request: pytest.FixtureRequest) -> dict[str, Any]:
    return dict(getattr(request, "param", {}))


@pytest.mark.parametrize("settings_overrides", [{"max_steps": 2}], indirect=True)
async def test_a_reply_stopped_at_the_step_limit_says_why(
    page: Page, live: Live, scripted: ScriptedProvider, tool_registry: ToolRegistry
) -> None:
    async def ping(args: dict[str, Any], context: ToolContext) -> str:
        return "pong"

    tool_registry.register(FunctionTool("ping", ping))
    scripted.enqueue(
        [{"tool_call": {"name": "ping", "arguments": {}, "id": "call_1"}}],
        [{"tool_call": {"name": "ping", "arguments": {}, "id": "call_2"}}],
    )
    await send(page, "ping until you drop")
    note = last_reply(page).locator(".msg-note")
    await expect(note).to_be_visible()
    await expect(note).to_contain_text("Stopped after 2 steps")
    await wait_status(page, "complete")
    await expect(last_reply(page).locator(".msg-error")).to_be_hidden()  # a note, not an error
    await page.reload()
    await expect(last_reply(page).locator(".msg-note")).to_contain_text("Stopped after 2 steps")
