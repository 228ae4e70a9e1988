"""The chat page as a person uses it every day (issue 25): scrolling during a stream, approval
cards that show what they ask about, stopping during an approval, and what the API offers."""

from __future__ import annotations

import base64
import re
from typing import Any

import pytest
from tests.conftest import Live
from tests.e2e.support import Page, expect, last_reply, send, wait_status

from parley.providers.scripted import ScriptedProvider
from parley.tools.base import FunctionTool, ToolContext
from parley.tools.registry import ToolRegistry

pytestmark = pytest.mark.e2e

BELOW = "() => { const s = document.getElementById('scroller');"
AT_BOTTOM = f"{BELOW} return s.scrollHeight - s.scrollTop - s.clientHeight < 4; }}"
TOP = "() => document.getElementById('scroller').scrollTop"
REPLY_LENGTH = (
    "() => [...document.querySelectorAll('.msg-assistant .md')].pop()?.textContent.length"
)


def _ticks(label: str, count: int) -> list[dict[str, Any]]:
    """``count`` tokens, one every 10 ms: a reply that keeps arriving."""
    steps: list[dict[str, Any]] = []
    for i in range(count):
        steps += [{"delay": 0.01}, {"text": f"{label}{i} "}]
    return steps


async def test_scrolling_up_during_a_stream_holds_and_the_bottom_follows_again(
    page: Page, live: Live, scripted: ScriptedProvider
) -> None:
    filler = [f"Paragraph {i}: " + "words " * 40 + "\n\n" for i in range(30)]
    scripted.enqueue(
        [
            {"text": filler},
            *_ticks("a", 400),
            {"text": " MIDDLE\n\n"},
            {"wait": "more"},
            *_ticks("b", 60),
            {"text": " THE END"},
        ]
    )
    await send(page, "a long story please")
    await expect(last_reply(page).locator(".md")).to_contain_text("a5 ")
    await page.wait_for_function(AT_BOTTOM)  # following the bottom while there

    await page.locator("#scroller").hover()
    await page.mouse.wheel(0, -700)
    await page.wait_for_function(f"{BELOW} return s.scrollHeight - s.scrollTop > 1200; }}")
    top = await page.evaluate(TOP)
    length = await page.evaluate(REPLY_LENGTH)
    await page.wait_for_function(f"() => ({REPLY_LENGTH[6:]}) > {length} + 300")
    assert await page.evaluate(TOP) == pytest.approx(top, abs=1)
    await expect(page.locator("#jump")).to_be_visible()
    await expect(last_reply(page).locator(".md")).to_contain_text("MIDDLE")
    assert await page.evaluate(TOP) == pytest.approx(top, abs=1)

    await page.mouse.wheel(0, 100_000)
    await page.wait_for_function(AT_BOTTOM)
    scripted.release("more")
    await wait_status(page, "complete")
    await expect(last_reply(page).locator(".md")).to_contain_text("THE END")
    await page.wait_for_function(AT_BOTTOM)
    await expect(page.locator("#jump")).to_be_hidden()


async def test_the_approval_card_shows_the_tool_its_server_and_its_arguments(
    page: Page, live: Live, scripted: ScriptedProvider, tool_registry: ToolRegistry
) -> None:
    async def write_file(args: dict[str, Any], context: ToolContext) -> str:
        return "written"

    tool_registry.register(
        FunctionTool("write_file", write_file, requires_approval=True, server="files")
    )
    long_text = "line of the file\n" * 40
    scripted.enqueue(
        [
            {
                "tool_call": {
                    "name": "write_file",
                    "arguments": {"path": "/tmp/notes.txt", "content": long_text, "mode": 420},
                    "id": "call_w",
                }
            }
        ],
        [{"text": "Written."}],
    )
    await send(page, "save my notes")
    card = page.locator('.tool[data-tool-call-id="call_w"]')
    approval = card.locator(".approval")
    await expect(approval).to_be_visible()
    await expect(approval.locator(".approval-text")).to_have_text(
        "Run write_file from files with these arguments?"
    )
    await expect(card.locator(".tool-server")).to_have_text("files")
    args = approval.locator(".approval-args")
    await expect(args.locator(".arg-key")).to_have_text(["path", "content", "mode"])
    await expect(args.locator(".arg").first.locator("pre")).to_be_visible()
    await expect(args.locator(".arg").first.locator("pre")).to_have_text('"/tmp/notes.txt"')
    await expect(args.locator(".arg").nth(2).locator("pre")).to_have_text("420")
    folded = args.locator(".arg-fold")
    await expect(folded).to_have_count(1)
    await expect(folded.locator(".arg-preview")).to_be_visible()
    await expect(folded.locator("pre")).to_be_hidden()
    await folded.locator("summary").click()
    await expect(folded.locator("pre")).to_be_visible()
    await expect(folded.locator("pre")).to_contain_text("line of the file\nline of the file")

    await page.reload()
    approval = page.locator('.tool[data-tool-call-id="call_w"] .approval')
    await expect(approval.locator(".approval-text")).to_contain_text("from files")
    await expect(approval.locator(".arg-key")).to_have_text(["path", "content", "mode"])
    await approval.locator('button[data-action="approve"]').click()
    await wait_status(page, "complete")
    await expect(last_reply(page)).to_contain_text("Written.")


async def test_stopping_during_an_approval_clears_the_card_and_enter_says_why_it_waits(
    page: Page, live: Live, scripted: ScriptedProvider, tool_registry: ToolRegistry
) -> None:
    calls: list[dict[str, Any]] = []

    async def drop_table(args: dict[str, Any], context: ToolContext) -> str:
        calls.append(args)
        return "dropped"

    tool_registry.register(FunctionTool("drop_table", drop_table, requires_approval=True))
    scripted.enqueue(
        [{"tool_call": {"name": "drop_table", "arguments": {"name": "users"}, "id": "call_d"}}],
        [{"text": "Next question answered."}],
    )
    await send(page, "drop the users table")
    card = page.locator('.tool[data-tool-call-id="call_d"]')
    await expect(card.locator(".approval")).to_be_visible()

    await page.locator("#input").fill("never mind")
    await page.locator("#input").press("Enter")
    await expect(page.locator(".toast")).to_contain_text("waiting for your approval")
    await expect(page.locator("#input")).to_have_value("never mind")
    await expect(page.locator(".msg-user")).to_have_count(1)

    await page.locator("#stop").click()
    await wait_status(page, "cancelled")
    card = page.locator('.tool[data-tool-call-id="call_d"]')
    await expect(card.locator(".approval")).to_have_count(0)
    await expect(card.locator(".tool-state")).to_have_text("Not run · stopped before an answer")
    await page.reload()
    card = page.locator('.tool[data-tool-call-id="call_d"]')
    await expect(card.locator(".tool-state")).to_have_text("Not run · stopped before an answer")
    await expect(page.locator(".approval")).to_have_count(0)
    await expect(page.locator(".tool-state", has_text="Needs your approval")).to_have_count(0)

    await send(page, "next question")
    await wait_status(page, "complete")
    await expect(last_reply(page)).to_contain_text("Next question answered.")
    assert calls == []


async def test_the_profile_picker_is_a_list_from_the_server_and_the_choice_is_sent(
    page: Page, live: Live, scripted: ScriptedProvider
) -> None:
    answers: list[int] = []
    page.on("response", lambda r: answers.append(r.status) if "/api/profiles" in r.url else None)
    await page.reload()
    picker = page.locator("select.picker-profile")
    await expect(picker.locator("option")).to_have_text(["Default profile", "generalist", "todo"])
    assert answers == [200]
    await expect(picker.locator('option[value="todo"]')).to_have_attribute(
        "title", "the todo tools and a task-assistant prompt"
    )
    await picker.select_option("todo")

    scripted.enqueue([{"text": "On it."}])
    async with page.expect_request(lambda r: r.url.endswith("/messages")) as sent:
        await send(page, "what is on my list?")
    assert (await sent.value).post_data_json["profile"] == "todo"
    await wait_status(page, "complete")
    system = scripted.requests[0].messages[0]
    assert system.role == "system" and "task assistant" in str(system.content)


@pytest.fixture
def settings_overrides(request: pytest.FixtureRequest) -> dict[str, Any]:
    return dict(getattr(request, "param", {}))


PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="


async def _give_image(page: Page, how: str, name: str) -> None:
    """Paste an image into the message box, or drop one on the composer, as a person would."""
    await page.evaluate(
        """([how, name, b64]) => {
          const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
          const data = new DataTransfer();
          data.items.add(new File([bytes], name, { type: "image/png" }));
          if (how === "paste") {
            document.getElementById("input").dispatchEvent(
              new ClipboardEvent("paste", { clipboardData: data, bubbles: true, cancelable: true }));
          } else {
            const zone = document.getElementById("composer");
            for (const type of ["dragenter", "dragover", "drop"]) {
              zone.dispatchEvent(new DragEvent(type, { dataTransfer: data, bubbles: true, cancelable: true }));
            }
          }
        }""",
        [how, name, PNG],
    )


@pytest.mark.parametrize(
    "settings_overrides", [{"max_attachments": 3, "max_attachment_bytes": 2000}], indirect=True
)
async def test_files_from_the_button_a_drop_and_a_paste_reach_the_model_within_the_limits(
    page: Page, live: Live, scripted: ScriptedProvider
) -> None:
    button = page.locator("#attach")
    await expect(button).to_have_attribute("title", re.compile("up to 3 files, 2 kB each"))
    await page.locator("#attach-input").set_input_files(
        [
            {"name": "big.log", "mimeType": "text/plain", "buffer": b"x" * 3000},
            {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"the secret is plum"},
        ]
    )
    await expect(page.locator(".toast")).to_contain_text("big.log is 3 kB: the limit is 2 kB")
    await _give_image(page, "paste", "")
    await _give_image(page, "drop", "dropped.png")
    tray = page.locator("#attachments")
    await expect(tray.locator(".chip-name")).to_have_text(
        ["notes.txt", "pasted-2.png", "dropped.png"]
    )
    await expect(tray.locator(".tray-rule")).to_have_text("3 of 3 · 2 kB each")
    await _give_image(page, "drop", "one-too-many.png")
    await expect(page.locator(".toast", has_text="At most 3 files")).to_be_visible()
    await expect(tray.locator(".chip")).to_have_count(3)

    scripted.enqueue([{"text": "A plum and two pixels."}])
    await send(page, "what are these?")
    await wait_status(page, "complete")
    await expect(tray).to_be_hidden()
    user = page.locator(".msg-user")
    await expect(user.locator("img.attachment-img")).to_have_count(2)
    await expect(user.locator(".attachment")).to_have_text("notes.txt")
    content = scripted.requests[0].messages[-1].content
    assert isinstance(content, list)
    texts = [p.text for p in content if p.type == "text"]
    images = [p for p in content if p.type == "image"]
    assert any("[file notes.txt]" in t and "the secret is plum" in t for t in texts), texts
    assert [i.media_type for i in images] == ["image/png", "image/png"]
    assert all(base64.b64decode(i.data or "") == base64.b64decode(PNG) for i in images)

    await page.reload()
    await expect(page.locator(".msg-user img.attachment-img")).to_have_count(2)


@pytest.mark.parametrize("settings_overrides", [{"auto_titles": True}], indirect=True)
async def test_the_title_the_model_makes_after_the_first_reply_shows_when_it_arrives(
    page: Page, live: Live, scripted: ScriptedProvider
) -> None:
    scripted.enqueue(
        [{"text": "Stew them with cinnamon."}],
        [{"wait": "title"}, {"text": "Autumn plum recipes"}],
    )
    await send(page, "what should I do with a crate of plums from the garden")
    await wait_status(page, "complete")
    await expect(page.locator("#title")).to_have_text("what should I do with a crate of…")
    scripted.release("title")
    await expect(page.locator("#title")).to_have_text("Autumn plum recipes", timeout=15_000)
    await expect(page.locator(".conv.active .conv-title")).to_have_text("Autumn plum recipes")


async def test_a_reply_waiting_for_a_busy_model_says_its_place_and_shows_no_tool_card(
    page: Page, scripted: ScriptedProvider
) -> None:
    """The local model answers one request at a time: a second tab's reply waits in its queue.
    The page said so in a tool card named "tool" that stayed after the reply."""
    scripted.enqueue([{"queue": 1}, {"wait": "model-free"}, {"text": "Now it is your turn."}])
    await send(page, "hello")
    note = page.locator(".msg-assistant .msg-note")
    await expect(note).to_have_text("waiting for the model: position 1 in the queue")
    await expect(page.locator(".msg-assistant .tool")).to_have_count(0)
    scripted.release("model-free")
    await wait_status(page, "complete")
    await expect(last_reply(page)).to_contain_text("Now it is your turn.")
    await expect(note).to_be_hidden()
    await expect(page.locator(".msg-assistant .tool")).to_have_count(0)
