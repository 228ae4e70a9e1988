"""A small MCP server for tests, run over stdio: ``python toy.py``.

It echoes (read-only), counts (with a side effect and progress), asks the person (elicitation),
grows a new tool at run time (``notifications/tools/list_changed``), crashes mid-call and hangs.
"""

from __future__ import annotations

import asyncio
import os

from mcp.server.mcpserver import Context, MCPServer
from mcp.types import ToolAnnotations
from pydantic import BaseModel, Field

server = MCPServer("toy", log_level="WARNING")
counter = {"n": 0}


class Confirm(BaseModel):
    confirm: bool
    reason: str = Field(default="", max_length=100)


@server.tool(annotations=ToolAnnotations(readOnlyHint=True))
def echo(text: str) -> str:
    """Say the text back."""
    return text


@server.tool()
async def count(steps: int, ctx: Context) -> int:
    """Add ``steps`` to the counter, reporting progress at each step."""
    for step in range(1, steps + 1):
        counter["n"] += 1
        await ctx.report_progress(step, steps, f"step {step}")
    return counter["n"]


@server.tool()
async def delete_file(path: str, ctx: Context) -> str:
    """Delete a file, after asking the person."""
    answer = await ctx.elicit(f"Really delete {path}?", Confirm)
    if answer.action == "accept" and answer.data.confirm:
        return f"deleted {path} ({answer.data.reason})"
    return f"kept {path} ({answer.action})"


@server.tool()
async def grow(ctx: Context) -> str:
    """Add the tool ``late`` and tell the client the list changed."""
    server.add_tool(late, annotations=ToolAnnotations(readOnlyHint=True))
    await ctx.request_context.session.send_tool_list_changed()
    return "grown"


def late() -> str:
    """A tool that exists only after ``grow``."""
    return "late but here"


@server.tool()
async def crash() -> str:
    """Exit the process in the middle of the call."""
    os._exit(3)


@server.tool()
async def hang() -> str:
    """Never answer."""
    await asyncio.Event().wait()
    return "unreachable"


@server.tool()
def pid() -> int:
    """The server's process id (tells a reconnection apart)."""
    return os.getpid()


if __name__ == "__main__":
    server.run()
