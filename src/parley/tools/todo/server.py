"""The built-in todo tools, written once as MCP tool functions.

The same functions serve two front doors: an MCP server (:func:`build_server`, for
``parley mcp todo`` over stdio or streamable HTTP) and parley's own registry, in process
(:mod:`parley.tools.todo`). The user is never an argument: it comes from :data:`current_user`,
which the front door sets from the run's context (in process), the bearer token (HTTP) or
``--user`` (stdio). Every query the store runs is scoped by that user, so a task id of another
user's task is simply "not found".
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from contextvars import ContextVar
from typing import Annotated, Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.tools import Tool as McpServerTool
from mcp.types import ToolAnnotations
from pydantic import BaseModel, Field

from parley.errors import NotFound
from parley.store import Store
from parley.store.values import Task

SERVER_NAME = "todo"
INSTRUCTIONS = "A personal todo list: add, list, update, complete and delete the caller's tasks."

current_user: ContextVar[str | None] = ContextVar("parley_todo_user", default=None)


class TaskOut(BaseModel):
    id: int
    title: str
    description: str | None = None
    completed: bool = False


class TaskList(BaseModel):
    tasks: list[TaskOut]
    count: int


class Deleted(BaseModel):
    id: int
    deleted: bool = True


Title = Annotated[str, Field(min_length=1, max_length=500, description="What to do")]
TaskId = Annotated[int, Field(description="The task's id, as list_tasks shows it")]

ANNOTATIONS = {
    "add_task": ToolAnnotations(title="Add a task", readOnlyHint=False, destructiveHint=False),
    "list_tasks": ToolAnnotations(title="List tasks", readOnlyHint=True),
    "update_task": ToolAnnotations(
        title="Update a task", readOnlyHint=False, destructiveHint=False, idempotentHint=True
    ),
    "complete_task": ToolAnnotations(
        title="Complete a task", readOnlyHint=False, destructiveHint=False, idempotentHint=True
    ),
    "delete_task": ToolAnnotations(title="Delete a task", readOnlyHint=False, destructiveHint=True),
}


def caller() -> str:
    """The user the tools act for; set by the front door, never by the model."""
    user = current_user.get()
    if not user:
        raise ToolError("no user: the todo tools act only for an authenticated caller")
    return user


def _out(task: Task) -> TaskOut:
    return TaskOut(
        id=task.id, title=task.title, description=task.description, completed=task.completed
    )


ToolFunction = Callable[..., Coroutine[Any, Any, BaseModel]]


def todo_functions(store: Store) -> list[ToolFunction]:
    """The five tool functions, bound to ``store``."""

    async def add_task(title: Title, description: str | None = None) -> TaskOut:
        """Add a task to the user's todo list. Returns the new task with its id."""
        return _out(await store.add_task(caller(), title, description))

    async def list_tasks(completed: bool | None = None) -> TaskList:
        """List the user's tasks: all of them, or only completed (true) or open (false) ones."""
        tasks = [_out(t) for t in await store.list_tasks(caller(), completed)]
        return TaskList(tasks=tasks, count=len(tasks))

    async def update_task(
        task_id: TaskId, title: str | None = None, description: str | None = None
    ) -> TaskOut:
        """Change a task's title and/or description."""
        values = {k: v for k, v in {"title": title, "description": description}.items() if v}
        if not values:
            raise ToolError("nothing to change: give a title or a description")
        return await _update(store, task_id, values)

    async def complete_task(task_id: TaskId, completed: bool = True) -> TaskOut:
        """Mark a task done (or not done again, with completed=false)."""
        return await _update(store, task_id, {"completed": completed})

    async def delete_task(task_id: TaskId) -> Deleted:
        """Delete a task for good."""
        try:
            await store.delete_task(caller(), task_id)
        except NotFound as exc:
            raise ToolError(exc.message) from exc
        return Deleted(id=task_id)

    return [add_task, list_tasks, update_task, complete_task, delete_task]


async def _update(store: Store, task_id: int, values: dict[str, Any]) -> TaskOut:
    try:
        return _out(await store.update_task(caller(), task_id, **values))
    except NotFound as exc:
        raise ToolError(exc.message) from exc


def todo_tool_specs(store: Store) -> list[McpServerTool]:
    """The tools as the MCP SDK describes them: name, description, schema, annotations."""
    return [
        McpServerTool.from_function(fn, annotations=ANNOTATIONS[fn.__name__])
        for fn in todo_functions(store)
    ]


def build_server(store: Store) -> MCPServer:
    """The todo MCP server (not started): serve it with stdio or streamable HTTP."""
    return MCPServer(
        "parley-todo",
        instructions=INSTRUCTIONS,
        tools=todo_tool_specs(store),
        log_level="WARNING",
    )
