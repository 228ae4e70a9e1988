"""The built-in todo tools, mounted in process: the MCP tool functions of :mod:`.server`
called directly, with the user taken from the run's :class:`~parley.tools.base.ToolContext`.
``list_tasks`` reports how many tasks it found as the call's progress (the progress socket's
``tool_progress`` ``count``)."""

from __future__ import annotations

from typing import Any

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.tools import Tool as McpServerTool
from pydantic import BaseModel

from parley.store import Store
from parley.tools.base import Tool, ToolContext, ToolOutput
from parley.tools.mcp_values import tool_hints
from parley.tools.todo.server import SERVER_NAME, TaskList, current_user, todo_tool_specs

__all__ = ["SERVER_NAME", "TodoTool", "todo_tools"]


class TodoTool(Tool):
    """One todo tool. The user comes from the run, so a model cannot act for someone else."""

    def __init__(self, spec: McpServerTool) -> None:
        hints = tool_hints(spec.annotations)
        super().__init__(
            name=spec.name,
            description=spec.description,
            input_schema=spec.parameters,
            read_only=hints.read_only,
            server=SERVER_NAME,
            destructive=hints.destructive,
        )
        self._spec = spec

    async def call(self, arguments: dict[str, Any], context: ToolContext) -> ToolOutput:
        token = current_user.set(context.user_id)
        try:
            result = await self._spec.run(arguments, Context())
        except ToolError as exc:
            return ToolOutput(content=_message(exc), is_error=True)
        finally:
            current_user.reset(token)
        if isinstance(result, TaskList):
            await context.progress(_found(result.count), result.count, result.count)
        if isinstance(result, BaseModel):
            return ToolOutput(content=result.model_dump(mode="json"))
        return ToolOutput(content=result)


def _found(count: int) -> str:
    return f"Found {count} task{'' if count == 1 else 's'}"


def _message(exc: ToolError) -> str:
    """The SDK prefixes "Error executing tool NAME: "; the model needs only the reason."""
    text = str(exc)
    head, sep, reason = text.partition(": ")
    return reason if sep and head.startswith("Error executing tool") else text


def todo_tools(store: Store) -> list[Tool]:
    return [TodoTool(spec) for spec in todo_tool_specs(store)]
