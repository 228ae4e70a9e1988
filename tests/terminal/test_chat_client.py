"""``parley chat`` in a pseudo-terminal (pexpect) against a live parley with the scripted provider.

The live server runs in this test's event loop, so every blocking pexpect call goes through
``asyncio.to_thread``.
"""

from __future__ import annotations

import asyncio
import io
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import Live, token

from parley.providers.scripted import ScriptedProvider
from parley.tools.base import FunctionTool, ToolContext
from parley.tools.registry import ToolRegistry

pexpect = pytest.importorskip(
    "pexpect", reason="pexpect is not installed (pip install -e '.[dev]')"
)

PARLEY = Path(sys.executable).with_name("parley")


class Terminal:
    """A ``parley chat`` child process, driven without blocking the event loop."""

    def __init__(self, child: Any) -> None:
        self.child = child

    async def expect(self, text: str) -> None:
        await asyncio.to_thread(self.child.expect_exact, text, timeout=10)

    async def line(self, text: str) -> None:
        await asyncio.to_thread(self.child.sendline, text)

    async def prompt(self) -> None:
        await self.expect("you>")

    async def interrupt(self) -> None:
        await asyncio.to_thread(self.child.sendintr)

    async def ended(self) -> int:
        await asyncio.to_thread(self.child.expect, pexpect.EOF, timeout=10)
        await asyncio.to_thread(self.child.close)
        return int(self.child.exitstatus)


@pytest.fixture
async def terminal(live: Live) -> AsyncIterator[Terminal]:
    if not PARLEY.exists():
        pytest.skip(f"the parley command is not installed next to {sys.executable}")
    env = {**os.environ, "PARLEY_TOKEN": token("alice"), "TERM": "dumb", "NO_COLOR": "1"}
    child = await asyncio.to_thread(
        pexpect.spawn,
        str(PARLEY),
        ["chat", "--url", live.url],
        env=env,
        encoding="utf-8",
        timeout=10,
        dimensions=(40, 140),
    )
    child.logfile_read = transcript = io.StringIO()
    yield Terminal(child)
    if child.isalive():
        child.terminate(force=True)
    print(f"--- the terminal showed ---\n{transcript.getvalue()}")


async def test_a_reply_streams_and_quit_leaves(
    terminal: Terminal, live: Live, scripted: ScriptedProvider
) -> None:
    scripted.enqueue([{"text": ["Hello ", "from ", "parley."]}])
    await terminal.prompt()
    await terminal.line("hi there")
    await terminal.expect("Hello from parley.")
    await terminal.expect("tokens")
    await terminal.prompt()
    await terminal.line("/quit")
    assert await terminal.ended() == 0
    assert scripted.requests[0].messages[-1].content == "hi there"
    async with live.client() as http:
        items = (await http.get("/api/conversations")).json()["items"]
    assert [c["title"] for c in items] == ["hi there"]


async def test_a_tool_call_asks_for_approval_and_runs_after_yes(
    terminal: Terminal, scripted: ScriptedProvider, tool_registry: ToolRegistry
) -> None:
    calls: list[dict[str, Any]] = []

    async def add_task(args: dict[str, Any], context: ToolContext) -> dict[str, Any]:
        calls.append(args)
        return {"id": 1, "title": args["title"]}

    tool_registry.register(FunctionTool("add_task", add_task, requires_approval=True))
    scripted.enqueue(
        [{"tool_call": {"name": "add_task", "arguments": {"title": "milk"}, "id": "call_1"}}],
        [{"text": "Added milk."}],
    )
    await terminal.prompt()
    await terminal.line("remind me to buy milk")
    await terminal.expect("add_task")
    await terminal.expect("Run add_task? [y]es / [n]o / [a]lways")
    assert calls == []
    await terminal.line("y")
    await terminal.expect("approved")
    await terminal.expect("✓ add_task")
    await terminal.expect("Added milk.")
    await terminal.prompt()
    assert calls == [{"title": "milk"}]
    await terminal.line("/quit")
    assert await terminal.ended() == 0


async def test_a_denied_tool_is_not_run(
    terminal: Terminal, scripted: ScriptedProvider, tool_registry: ToolRegistry
) -> None:
    calls: list[dict[str, Any]] = []

    async def drop_table(args: dict[str, Any], context: ToolContext) -> str:
        calls.append(args)
        return "dropped"

    tool_registry.register(FunctionTool("drop_table", drop_table, requires_approval=True))
    scripted.enqueue(
        [{"tool_call": {"name": "drop_table", "arguments": {}, "id": "call_d"}}],
        [{"text": "Left it alone."}],
    )
    await terminal.prompt()
    await terminal.line("drop it")
    await terminal.expect("Run drop_table?")
    await terminal.line("n")
    await terminal.expect("denied")
    await terminal.expect("Left it alone.")
    await terminal.prompt()
    assert calls == []


async def test_an_elicitation_is_filled_field_by_field(
    terminal: Terminal, scripted: ScriptedProvider, tool_registry: ToolRegistry
) -> None:
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "title": "Name"},
            "guests": {"type": "integer", "title": "Guests"},
            "terrace": {"type": "boolean", "title": "Terrace"},
        },
        "required": ["name", "guests"],
    }
    answers: list[Any] = []

    async def book(args: dict[str, Any], context: ToolContext) -> str:
        answers.append(await context.elicit("Booking details?", schema))
        return "booked"

    tool_registry.register(FunctionTool("book", book))
    scripted.enqueue(
        [{"tool_call": {"name": "book", "arguments": {}, "id": "call_b"}}], [{"text": "Done."}]
    )
    await terminal.prompt()
    await terminal.line("book a table")
    await terminal.expect("Booking details?")
    await terminal.expect("Answer?")
    await terminal.line("y")
    await terminal.expect("Name")
    await terminal.line("Ada")
    await terminal.expect("Guests")
    await terminal.line("four")
    await terminal.expect("Guests")
    await terminal.line("4")
    await terminal.expect("Terrace")
    await terminal.line("y")
    await terminal.expect("Done.")
    await terminal.prompt()
    assert answers == [("accept", {"name": "Ada", "guests": 4, "terrace": True})]


async def test_ctrl_c_stops_a_reply_and_the_commands_list_and_switch(
    terminal: Terminal, live: Live, scripted: ScriptedProvider
) -> None:
    scripted.enqueue([{"text": "first reply"}], [{"text": "partial "}, {"wait": "never"}])
    await terminal.prompt()
    await terminal.line("first chat")
    await terminal.expect("first reply")
    await terminal.prompt()
    await terminal.line("/new")
    await terminal.expect("new conversation")
    await terminal.line("second chat")
    await terminal.expect("partial")
    await terminal.interrupt()
    await terminal.expect("stopped")
    await terminal.prompt()
    await terminal.line("/list")
    await terminal.expect("second chat")
    await terminal.expect("first chat")
    async with live.client() as http:
        items = (await http.get("/api/conversations")).json()["items"]
    first = next(c["id"] for c in items if c["title"] == "first chat")
    await terminal.line(f"/switch {first}")
    await terminal.expect("parley: first reply")
    await terminal.prompt()
    await terminal.line("/stop")
    await terminal.expect("nothing is running")
    await terminal.line("/quit")
    assert await terminal.ended() == 0


@pytest.fixture
def settings_overrides(request: pytest.FixtureRequest) -> dict[str, Any]:
    return dict(getattr(request, "param", {}))


@pytest.mark.parametrize("settings_overrides", [{"max_steps": 2}], indirect=True)
async def test_a_reply_stopped_at_the_step_limit_says_so(
    terminal: Terminal, scripted: ScriptedProvider, tool_registry: ToolRegistry
) -> None:
    async def ping(args: dict[str, Any], context: ToolContext) -> str:
        return "pong"

    tool_registry.register(FunctionTool("ping", ping))
    loop = [{"tool_call": {"name": "ping", "arguments": {}, "id": f"call_{n}"}} for n in (1, 2)]
    scripted.enqueue([loop[0]], [loop[1]])
    await terminal.prompt()
    await terminal.line("ping forever")
    await terminal.expect("Stopped after 2 steps: the model kept calling tools")
    await terminal.expect("tokens")
    await terminal.prompt()
    await terminal.line("/quit")
    assert await terminal.ended() == 0
