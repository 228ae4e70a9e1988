"""What a person sees of ``parley chat``: its markdown rendered, lines broken at word boundaries at
the terminal's width, the tokens of a stopped reply, a failed reply's error in ``/switch``.

``parley chat`` runs in a pseudo-terminal against a live parley with the scripted provider, and
its output goes through a terminal emulator (tests/support/screen.py): the assertions are on the
screen and its scrollback, after the cursor moves and redraws of the live region.
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from itertools import pairwise
from pathlib import Path
from typing import Any

import pexpect
import pytest
from tests.conftest import Live, token
from tests.support.screen import Terminal

from parley.providers.scripted import ScriptedProvider
from parley.tools.base import FunctionTool, ToolContext
from parley.tools.registry import ToolRegistry

PARLEY = Path(sys.executable).with_name("parley")
Open = Callable[..., Awaitable[Terminal]]

REPLY = (
    "## Shopping list\n\n"
    "You asked for **three things** and `milk` is one.\n\n"
    "```python\n"
    "def total(prices):\n"
    "    return sum(prices)\n"
    "```\n\n"
    "- eggs\n"
    "- bread\n"
)

WORDS = (
    "Streaming replies should wrap between words, never inside them: "
    "extraordinarily lengthy vocabulary demonstrates whether the terminal client "
    "breaks its lines before a word that would cross the edge of the window."
)


@pytest.fixture
async def open_chat(live: Live) -> AsyncIterator[Open]:
    """Start ``parley chat`` in a terminal of a given kind and size."""
    if not PARLEY.exists():
        pytest.skip(f"the parley command is not installed next to {sys.executable}")
    terminals: list[Terminal] = []

    async def start(
        term: str = "xterm-256color", columns: int = 80, rows: int = 24, *, piped: bool = False
    ) -> Terminal:
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("NO_COLOR", "FORCE_COLOR", "TTY_INTERACTIVE", "TTY_COMPATIBLE")
        }
        env.update(PARLEY_TOKEN=token("alice"), TERM=term, COLUMNS=str(columns), LINES=str(rows))
        command = [str(PARLEY), "chat", "--url", live.url]
        if piped:  # its output goes through a pipe, as in ``parley chat | tee log``
            command = ["/bin/sh", "-c", f"{shlex.join(command)} | cat"]
        child = await asyncio.to_thread(
            pexpect.spawn,
            command[0],
            command[1:],
            env=env,
            encoding="utf-8",
            dimensions=(rows, columns),
        )
        terminal = Terminal(child, columns, rows)
        terminals.append(terminal)
        await terminal.shows("you>")
        return terminal

    yield start
    for terminal in terminals:
        if terminal.child.isalive():
            terminal.child.terminate(force=True)
        print(f"--- the terminal showed ---\n{terminal.text()}")


async def test_a_reply_s_markdown_is_rendered_once_it_is_complete(
    open_chat: Open, scripted: ScriptedProvider
) -> None:
    head, tail = REPLY.split("```python")
    scripted.enqueue([{"text": head}, {"wait": "rest"}, {"text": "```python" + tail}])
    terminal = await open_chat()
    await terminal.type("what do I buy?")
    await terminal.shows("You asked for three things")  # while the reply streams
    assert "tokens" not in terminal.text()
    scripted.release("rest")
    await terminal.shows("tokens")
    await terminal.shows("you>", times=2)

    text = terminal.text()
    assert "Shopping list" in text
    assert "You asked for three things and milk is one." in text
    assert "def total(prices):" in text and "    return sum(prices)" in text
    assert "• eggs" in text and "• bread" in text
    for marker in ("##", "**", "`", "- eggs"):
        assert marker not in text, f"{marker!r} is on the screen:\n{text}"
    assert text.count("Shopping list") == 1  # the live region left no copy behind
    assert text.count("You asked for") == 1
    assert all(cell.bold for cell in terminal.cells("three things"))
    heading = terminal.cells("Shopping list")[0]
    assert heading.bold or heading.underscore  # a heading, not a paragraph
    code = terminal.cells("def total")
    assert code[0].bg != "default"  # a code block, on its own background
    assert code[0].fg != terminal.cells("prices):")[-1].fg  # highlighted: a keyword's colour


async def test_through_a_pipe_the_reply_is_the_text_as_it_came(
    open_chat: Open, scripted: ScriptedProvider
) -> None:
    scripted.enqueue([{"text": ["# Title\n\nSome ", "**bold** words ", "and more."]}])
    terminal = await open_chat(piped=True, columns=30)
    await terminal.type("plain please")
    await terminal.shows("tokens")
    lines = terminal.lines()
    assert "# Title" in lines
    assert "Some **bold** words and more." in lines
    assert not any(cell.bold for cell in terminal.cells("**bold**"))


async def test_text_around_an_approved_tool_call_is_rendered_and_the_answer_echoed(
    open_chat: Open, scripted: ScriptedProvider, tool_registry: ToolRegistry
) -> None:
    async def add_task(args: dict[str, Any], context: ToolContext) -> dict[str, Any]:
        return {"id": 1, "title": args["title"]}

    tool_registry.register(FunctionTool("add_task", add_task, requires_approval=True))
    call = {"name": "add_task", "arguments": {"title": "milk"}, "id": "call_1"}
    scripted.enqueue(
        [{"text": ["Let me **note** ", "that."]}, {"tool_call": call}],
        [{"text": ["Added *milk* ", "to your list."]}],
    )
    terminal = await open_chat()
    await terminal.type("remind me to buy milk")
    await terminal.shows("Run add_task? [y]es / [n]o / [a]lways:")
    await terminal.type("y")
    await terminal.shows("Added milk to your list.")
    await terminal.shows("you>", times=2)

    lines = terminal.lines()
    order = ["Let me note that.", "⚙ add_task", "Run add_task?", "approved", "✓ add_task", "Added"]
    at = [next(n for n, line in enumerate(lines) if line.startswith(x)) for x in order]
    assert at == sorted(at), "\n".join(lines)
    assert lines[at[2]].endswith(": y")  # what the person typed is shown where they typed it
    assert terminal.text().count("Let me note that.") == 1
    assert "**" not in terminal.text() and "*milk*" not in terminal.text()
    assert all(cell.italics for cell in terminal.cells("milk to")[:4])


async def test_a_reply_taller_than_the_screen_streams_into_the_scrollback_once(
    open_chat: Open, scripted: ScriptedProvider
) -> None:
    code = [f"print('line {n:02}')\n" for n in range(1, 41)]
    after = [f"Paragraph {n} says a few words. " for n in range(1, 9)]
    opening = {"text": ["Before.\n\n```python\n", *code[:30]]}
    closing = {"text": [*code[30:], "```\n\n", *after]}
    scripted.enqueue([opening, {"wait": "rest"}, closing])
    terminal = await open_chat(rows=12)
    await terminal.type("a long one")
    await terminal.shows("print('line 30')")  # the code block being written: its last lines
    scripted.release("rest")
    await terminal.shows("tokens")
    await terminal.shows("you>", times=2)

    text = terminal.text()
    for n in range(1, 41):
        assert text.count(f"print('line {n:02}')") == 1, f"line {n:02}:\n{text}"
    assert text.count("Before.") == 1
    assert text.count("Paragraph 1 says") == 1 and text.count("Paragraph 8 says") == 1
    assert "```" not in text


@pytest.mark.parametrize("term", ["xterm-256color", "dumb"])
async def test_lines_break_at_word_boundaries_at_the_terminal_s_width(
    open_chat: Open, scripted: ScriptedProvider, term: str
) -> None:
    chunks = re.findall(r".{1,7}", WORDS)  # cut through words, as a model's tokens do
    scripted.enqueue([{"text": chunks}])
    terminal = await open_chat(term=term, columns=40)
    await terminal.type("wrap please")
    await terminal.shows("tokens")

    lines = terminal.lines()
    start = next(n for n, line in enumerate(lines) if line.startswith("Streaming"))
    end = next(n for n, line in enumerate(lines) if line.endswith("window."))
    shown = [line.strip() for line in lines[start : end + 1]]
    assert len(shown) > 4
    assert " ".join(shown) == WORDS  # every line ends at a word's end, no word cut
    for line, after in pairwise(shown):  # and no line could have held the next word
        assert len(line) + 1 + len(after.split()[0]) > 40, f"{line!r} could hold more"


@pytest.mark.parametrize("term", ["xterm-256color", "dumb"])
async def test_a_stopped_reply_reports_its_tokens_and_switch_marks_it_stopped(
    open_chat: Open, live: Live, scripted: ScriptedProvider, term: str
) -> None:
    scripted.enqueue([{"text": "A **partial** answer, then "}, {"wait": "never"}])
    terminal = await open_chat(term=term)
    await terminal.type("tell me everything")
    await terminal.shows("then")
    await terminal.interrupt()
    await terminal.shows("stopped")
    await terminal.shows("you>", times=2)

    ended = re.search(r"· (\d+) tokens · stopped", terminal.text())
    assert ended is not None, terminal.text()
    async with live.client() as http:
        convo = (await http.get("/api/conversations")).json()["items"][0]
        messages = (await http.get(f"/api/conversations/{convo['id']}")).json()["messages"]
    reply = messages[-1]
    assert reply["status"] == "cancelled"
    assert int(ended.group(1)) == reply["usage"]["total_tokens"] > 0
    assert reply["usage"]["completion_tokens"] > 0  # what it said before it was stopped
    # rendered; a dumb terminal gets the text as it came
    said = "A **partial** answer, then" if term == "dumb" else "A partial answer, then"
    assert terminal.text().count(said) == 1
    assert "^C" not in terminal.text()

    await terminal.type("/new")
    await terminal.type(f"/switch {convo['id']}")
    await terminal.shows("you: tell me everything", times=1)
    await terminal.shows("· stopped")


async def test_switch_shows_a_failed_reply_s_error(
    open_chat: Open, live: Live, scripted: ScriptedProvider
) -> None:
    failure = {"code": "ERR_PROVIDER_UNAVAILABLE", "message": "the model is down for repairs"}
    scripted.enqueue([{"text": "Let me look that "}, {"error": failure}])
    terminal = await open_chat()
    await terminal.type("look it up")
    await terminal.shows("error: ")
    await terminal.shows("you>", times=2)
    async with live.client() as http:
        convo = (await http.get("/api/conversations")).json()["items"][0]

    await terminal.type("/new")
    await terminal.shows("new conversation")
    await terminal.type(f"/switch {convo['id']}")
    await terminal.shows("✗ failed:")
    switched = terminal.text().rpartition(f"/switch {convo['id']}")[2]
    assert "you: look it up" in switched
    assert "Let me look that" in switched
    assert "✗ failed: the model is down for repairs" in switched
    await terminal.type("/quit")
    assert await terminal.ended() == 0
