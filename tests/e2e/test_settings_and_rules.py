"""The chat page's settings (issue 25): a conversation's model, system prompt, temperature and
profile, used by the next turn; the tools that run without asking, each revocable; the theme."""

from __future__ import annotations

from typing import Any

import pytest
from tests.conftest import Live
from tests.e2e.support import Page, expect, last_reply, send, shoot, wait_status

from parley.providers.scripted import ScriptedProvider
from parley.tools.base import FunctionTool, ToolContext
from parley.tools.registry import ToolRegistry

pytestmark = pytest.mark.e2e

BACKGROUND = "() => getComputedStyle(document.body).backgroundColor"
WHITE, DARK = "rgb(255, 255, 255)", "rgb(23, 24, 28)"


def _errors(page: Page) -> list[str]:
    """The console's errors from now on (a failed load is one)."""
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    return errors


async def _rules(live: Live) -> list[str]:
    async with live.client() as http:
        items = (await http.get("/api/approval-rules")).json()["items"]
    return [r["name"] for r in items]


async def test_an_always_allowed_tool_is_listed_and_once_revoked_it_asks_again(
    page: Page, live: Live, scripted: ScriptedProvider, tool_registry: ToolRegistry
) -> None:
    errors = _errors(page)
    calls: list[dict[str, Any]] = []

    async def delete_task(args: dict[str, Any], context: ToolContext) -> str:
        calls.append(args)
        return "deleted"

    tool_registry.register(FunctionTool("delete_task", delete_task, requires_approval=True))
    scripted.enqueue(
        [{"tool_call": {"name": "delete_task", "arguments": {"task_id": 1}, "id": "call_a"}}],
        [{"text": "Deleted one."}],
        [{"tool_call": {"name": "delete_task", "arguments": {"task_id": 2}, "id": "call_b"}}],
        [{"text": "Deleted two without asking."}],
        [{"tool_call": {"name": "delete_task", "arguments": {"task_id": 3}, "id": "call_c"}}],
        [{"text": "Deleted three, once approved."}],
    )
    dialog = page.locator("#rules-dialog")
    await page.locator("#rules").click()
    await expect(dialog.locator(".rules-empty")).to_be_visible()
    await dialog.get_by_role("button", name="Close").click()
    await expect(dialog).to_have_count(0)

    await send(page, "delete task 1")
    await page.locator('.tool[data-tool-call-id="call_a"] button[data-action="always"]').click()
    await wait_status(page, "complete")
    await page.locator("#rules").click()
    await expect(dialog.locator(".rule-name")).to_have_text(["delete_task"])
    await expect(dialog.locator(".rule")).to_contain_text("this tool")
    await shoot(page, "24-rules")
    await page.keyboard.press("Escape")
    await expect(dialog).to_have_count(0)

    await send(page, "delete task 2")
    await expect(last_reply(page)).to_contain_text("without asking")
    await wait_status(page, "complete")
    assert calls == [{"task_id": 1}, {"task_id": 2}]

    await page.locator("#rules").click()
    await dialog.get_by_role("button", name="Revoke delete_task").click()
    await expect(dialog.locator(".rule")).to_have_count(0)
    await expect(dialog.locator(".rules-empty")).to_be_visible()
    assert await _rules(live) == []
    await page.keyboard.press("Escape")
    await expect(dialog).to_have_count(0)
    await page.reload()
    await page.locator("#rules").click()
    await expect(dialog.locator(".rules-empty")).to_be_visible()
    await page.keyboard.press("Escape")

    await send(page, "delete task 3")
    card = page.locator('.tool[data-tool-call-id="call_c"]')
    await expect(card.locator(".approval")).to_be_visible()
    assert calls == [{"task_id": 1}, {"task_id": 2}]
    await card.locator('button[data-action="approve"]').click()
    await wait_status(page, "complete")
    assert calls == [{"task_id": 1}, {"task_id": 2}, {"task_id": 3}]
    assert errors == []


def _system(request: Any) -> str | None:
    first = request.messages[0]
    return str(first.content) if first.role == "system" else None


async def test_the_settings_panel_sets_what_the_next_turn_uses(
    page: Page, live: Live, scripted: ScriptedProvider, tool_registry: ToolRegistry
) -> None:
    errors = _errors(page)

    async def tool(args: dict[str, Any], context: ToolContext) -> str:
        return "ok"

    tool_registry.register(FunctionTool("add_task", tool))
    tool_registry.register(FunctionTool("web_search", tool))
    providers = live.services.providers
    providers.register("scripted", scripted, default_model="demo", models=["demo", "large"])
    await page.reload()
    scripted.enqueue([{"text": "Arr."}], [{"text": "Noted, in large."}], [{"text": "Default."}])

    dialog = page.locator("#settings-dialog")
    await page.locator("#settings").click()
    await expect(dialog.locator(".dialog-title")).to_have_text("New chat settings")
    await expect(dialog.locator("select.picker-model option")).to_have_text(
        ["Default model", "scripted/demo", "scripted/large"]
    )
    await dialog.get_by_label("System prompt").fill("You are a pirate.")
    await dialog.get_by_role("button", name="Save").click()
    await expect(dialog).to_have_count(0)
    await send(page, "hello")
    await wait_status(page, "complete")
    first = scripted.requests[0]
    assert (first.model, first.temperature, _system(first)) == ("demo", None, "You are a pirate.")
    assert sorted(t.name for t in first.tools) == ["add_task", "web_search"]

    await page.locator("#settings").click()
    await expect(dialog.locator(".dialog-title")).to_have_text("Chat settings")
    await expect(dialog.get_by_label("System prompt")).to_have_value("You are a pirate.")
    await dialog.locator("select.picker-model").select_option("scripted/large")
    await dialog.locator("select.picker-profile").select_option("todo")
    await expect(dialog.locator(".help").first).to_have_text(
        "the todo tools and a task-assistant prompt"
    )
    await dialog.get_by_label("Temperature").fill("0.3")
    await dialog.get_by_label("System prompt").fill("You keep my books.")
    await shoot(page, "23-settings")
    async with page.expect_response(lambda r: r.request.method == "PATCH") as patched:
        await dialog.get_by_role("button", name="Save").click()
    assert (await patched.value).ok
    await expect(dialog).to_have_count(0)
    await expect(page.locator("#model-picker select")).to_have_value("scripted/large")
    await expect(page.locator("#profile-picker select")).to_have_value("todo")

    await send(page, "what now?")
    await expect(last_reply(page)).to_contain_text("Noted, in large.")
    await wait_status(page, "complete")
    second = scripted.requests[1]
    assert (second.model, second.temperature) == ("large", 0.3)
    assert _system(second) == "You keep my books."
    assert [t.name for t in second.tools] == ["add_task"]

    cid = page.url.split("#/c/")[1]
    async with live.client() as http:
        convo = (await http.get(f"/api/conversations/{cid}")).json()
    assert [convo[k] for k in ("provider", "model", "profile", "temperature", "system")] == [
        "scripted",
        "large",
        "todo",
        0.3,
        "You keep my books.",
    ]
    await page.reload()
    await expect(page.locator("#model-picker select")).to_have_value("scripted/large")
    await page.locator("#settings").click()
    await expect(dialog.get_by_label("Temperature")).to_have_value("0.3")
    await expect(dialog.get_by_label("System prompt")).to_have_value("You keep my books.")
    await dialog.locator("select.picker-profile").select_option("")
    await dialog.get_by_label("Temperature").fill("")
    await dialog.get_by_label("System prompt").fill("")
    await dialog.get_by_role("button", name="Save").click()
    await expect(dialog).to_have_count(0)
    async with page.expect_response(lambda r: r.request.method == "PATCH") as patched:
        await page.locator("#model-picker select").select_option("")
    assert (await patched.value).ok

    await send(page, "and now?")
    await expect(last_reply(page)).to_contain_text("Default.")
    await wait_status(page, "complete")
    third = scripted.requests[2]
    assert (third.model, third.temperature, _system(third)) == ("demo", None, None)
    assert len(third.tools) == 2
    assert errors == []


async def test_the_theme_toggle_goes_system_light_dark_and_is_remembered(
    page: Page, live: Live
) -> None:
    html = page.locator("html")
    button = page.locator("#theme")
    await page.emulate_media(color_scheme="light")
    await expect(button).to_have_attribute("data-mode", "system")
    await expect(html).to_have_attribute("data-theme", "light")
    assert await page.evaluate(BACKGROUND) == WHITE
    await page.emulate_media(color_scheme="dark")
    await expect(html).to_have_attribute("data-theme", "dark")
    assert await page.evaluate(BACKGROUND) == DARK

    await button.click()
    await expect(button).to_have_attribute("data-mode", "light")
    await expect(html).to_have_attribute("data-theme", "light")
    assert await page.evaluate(BACKGROUND) == WHITE
    await expect(page.locator('link[data-scheme="light"]')).to_have_attribute("media", "all")
    await expect(page.locator('link[data-scheme="dark"]')).to_have_attribute("media", "not all")

    await button.click()
    await expect(button).to_have_attribute("data-mode", "dark")
    await page.emulate_media(color_scheme="light")
    await page.reload()
    await expect(page.locator("#theme")).to_have_attribute("data-mode", "dark")
    await expect(html).to_have_attribute("data-theme", "dark")
    assert await page.evaluate(BACKGROUND) == DARK
    await expect(page.locator('link[data-scheme="dark"]')).to_have_attribute("media", "all")

    await page.locator("#theme").click()
    await expect(page.locator("#theme")).to_have_attribute("data-mode", "system")
    await expect(html).to_have_attribute("data-theme", "light")
    assert await page.evaluate("localStorage.getItem('parley.theme')") is None
