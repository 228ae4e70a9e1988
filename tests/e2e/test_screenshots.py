"""A showcase conversation (a tool approved and run, Markdown with code, an approval waiting),
saved as screenshots in light and dark under test-artifacts/ (the scripted provider plays the
model). docs/screenshot.png is not this: it shows what a fresh `make serve` gives (README)."""

from __future__ import annotations

from typing import Any

import pytest
from tests.conftest import Live
from tests.e2e.support import Browser, expect, new_context, send, shoot, wait_status

from parley.providers.scripted import ScriptedProvider
from parley.tools.base import FunctionTool, ToolContext
from parley.tools.registry import ToolRegistry

pytestmark = pytest.mark.e2e


REPLY = """Added **buy oat milk** to your list. Here is a small streaming client with `httpx`:

```python
import httpx

with httpx.stream("POST", url, json={"content": "Hi"}) as response:
    for line in response.iter_lines():
        if line.startswith("data: "):
            print(line[6:])
```

| event | meaning |
|---|---|
| `content` | a piece of the reply |
| `done` | the run ended, with token usage |
"""


def _tools(registry: ToolRegistry) -> None:
    async def add_task(args: dict[str, Any], context: ToolContext) -> dict[str, Any]:
        return {"id": 12, "title": args["title"], "completed": False}

    async def delete_task(args: dict[str, Any], context: ToolContext) -> dict[str, Any]:
        return {"deleted": args["task_id"]}

    registry.register(FunctionTool("add_task", add_task, requires_approval=True))
    registry.register(FunctionTool("delete_task", delete_task, requires_approval=True))


async def _seed_list(live: Live) -> None:
    async with live.client() as http:
        for title in ("Weekly groceries", "SQL window functions", "Trip planning for Lisbon"):
            await http.post("/api/conversations", json={"title": title})


async def test_showcase_screenshots_in_light_and_dark(
    browser: Browser, live: Live, scripted: ScriptedProvider, tool_registry: ToolRegistry
) -> None:
    _tools(tool_registry)
    await _seed_list(live)
    scripted.enqueue(
        [{"tool_call": {"name": "add_task", "arguments": {"title": "buy oat milk"}, "id": "c1"}}],
        [{"text": [REPLY[i : i + 40] for i in range(0, len(REPLY), 40)]}],
        [{"tool_call": {"name": "delete_task", "arguments": {"task_id": 9}, "id": "c2"}}],
        [{"text": "Kept it."}],
    )
    context = await new_context(browser, live, viewport={"width": 1360, "height": 900})
    page = await context.new_page()
    await page.goto("/")
    await send(page, "Add 'buy oat milk' to my list, then show me how to stream a reply.")
    await page.locator('.tool[data-tool-call-id="c1"] button[data-action="approve"]').click()
    await wait_status(page, "complete")
    await send(page, "And delete the old milk task, number 9.")
    await expect(page.locator('.tool[data-tool-call-id="c2"] .approval')).to_be_visible()
    await page.mouse.move(0, 0)
    await page.wait_for_timeout(300)
    await shoot(page, "13-showcase-light")

    await page.emulate_media(color_scheme="dark")
    await page.wait_for_timeout(400)  # let the colour transitions finish
    await shoot(page, "14-showcase-dark")
    await page.locator('.tool[data-tool-call-id="c2"] button[data-action="deny"]').click()
    await wait_status(page, "complete")
    await context.close()
