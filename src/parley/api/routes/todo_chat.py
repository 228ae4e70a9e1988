"""The todo app: its assistant, ``POST /api/{user_id}/chat {message, conversation_id?}`` with the
``todo`` profile (the built-in todo tools and a task-assistant prompt), and its task pages' REST
routes over the same tasks, ``/api/{user_id}/tasks`` and ``/api/{user_id}/tasks/{task_id}``: a
task the assistant adds is in the list, and one the app adds is in the assistant's.

The chat's answer is ``{message_id, conversation_id, role, content, created_at, tool_calls}``, or
with ``Accept: text/event-stream`` the stream of :class:`parley.protocols.seeds.TodoChatSSE`. In
both, a ``list_tasks`` result is the list of tasks, as the app reads it (the MCP tool itself
answers ``{tasks, count}``: MCP's structured output is an object). A
reply that waits for a tool approval comes back with ``pending`` (and ``approval_required`` in
the stream); answer it on ``POST /api/runs/{run_id}/approvals/{tool_call_id}``.

Every error of these routes is ``{"error": "<message>"}`` (the code in ``X-Error-Code``), as the
app prints it; a body that does not validate is a 400. A failure of the model's API is told in
plain words, its own text kept for the log. ``{user_id}`` must be the caller's (403 otherwise).
"""

from __future__ import annotations

from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from parley.api import doors
from parley.api.deps import OwnCaller, OwnUser, ServicesDep
from parley.api.errors import DoorRoute, todo_error
from parley.api.openapi import STREAM_RESPONSES, TODO_ERROR_RESPONSES
from parley.api.streaming import sse_response
from parley.chat import events as ev
from parley.engine.requests import TurnRequest
from parley.errors import ParleyError, RateLimited, ValidationFailed
from parley.protocols.base import Frames, sse
from parley.protocols.reply import CallSummary, collect
from parley.protocols.seeds import TodoChatSSE
from parley.store.values import Task
from parley.wire import compact

log = structlog.get_logger("parley.api")

PROFILE = "todo"
# what the app's user is told when the model's API fails, for the codes whose message is its text
PROVIDER_FAILURE = "The assistant could not answer just now. Please try again."
UPSTREAM_CODES = frozenset({"ERR_PROVIDER_UNAVAILABLE", "ERR_TIMEOUT", "ERR_INVALID_MODEL"})


class TodoRoute(DoorRoute):
    """Errors in the todo app's shape (:func:`todo_error`); a body that does not validate is a
    400."""

    validation_status = 400

    @staticmethod
    def render(exc: ParleyError) -> Response:
        headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, RateLimited) else None
        return todo_error(exc.status, exc.code, exc.message, headers)


def told(failure: ev.RunFailed) -> ev.RunFailed:
    """``failure`` as the app's user sees it: a failure of the model's API in plain words."""
    if failure.code not in UPSTREAM_CODES:
        return failure
    log.warning("todo_chat_provider_failed", code=failure.code, detail=failure.message)
    return failure.model_copy(update={"message": PROVIDER_FAILURE})


def app_result(tool_name: str, result: Any) -> Any:
    """A tool's result as the app reads it: ``list_tasks`` gives the list of tasks."""
    if tool_name.rpartition("__")[2] == "list_tasks" and isinstance(result, dict):
        tasks = result.get("tasks")
        if isinstance(tasks, list):
            return tasks
    return result


def app_call(call: CallSummary) -> dict[str, Any]:
    return {**call.as_dict(), "result": app_result(call.tool_name, call.result)}


class TodoSSE(TodoChatSSE):
    """The assistant's stream, its error events in the app's shape: ``{"type": "error",
    "error": "<message>", "code"}``, a failure of the model's API told in plain words."""

    def encode(self, seq: int, event: ev.EngineEvent) -> Frames:
        if isinstance(event, ev.RunFailed):
            event = told(event)
        elif isinstance(event, ev.ToolResult):
            event = event.model_copy(update={"result": app_result(event.tool_name, event.result)})
        return super().encode(seq, event)

    def error_frames(self, code: str, message: str) -> Frames:
        return [sse(compact({"type": "error", "error": message, "code": code}))]


router = APIRouter(tags=["todo"], route_class=TodoRoute, responses=TODO_ERROR_RESPONSES)


class TodoMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    message: str  # its limits are every door's (Engine.check)
    conversation_id: str | int | None = None


@router.post("/api/{user_id}/chat", response_model=None, responses=STREAM_RESPONSES)
async def chat(body: TodoMessage, request: Request, caller: OwnCaller, s: ServicesDep) -> Response:
    if not body.message.strip():
        raise ValidationFailed("message is required")
    turn_request = TurnRequest(content=body.message, profile=PROFILE)
    s.engine.check(turn_request)  # before a new conversation is written
    if body.conversation_id is not None:
        convo = (await s.store.reach(caller, str(body.conversation_id), "write")).conversation
    else:
        convo = await s.store.create_conversation(
            caller.user_id, profile=PROFILE, metadata={"source": "todo"}
        )
    turn = await s.runs.start(caller, convo.id, turn_request)
    events = doors.until_suspended(s.runs.turn_events(turn))
    if "text/event-stream" in request.headers.get("accept", ""):
        encoder = TodoSSE(conversation_id=convo.id, run_id=turn.run_id)
        return sse_response(encoder, events, ping=s.settings.heartbeat_interval)
    reply = await collect(events)
    if isinstance(reply.outcome, ev.RunFailed):
        failure = told(reply.outcome)
        return todo_error(failure.status, failure.code, failure.message)
    message = await s.store.get_message(convo.user_id, convo.id, turn.message_id)
    out: dict[str, Any] = {
        "message_id": message.id,
        "conversation_id": convo.id,
        "role": "assistant",
        "content": reply.text,
        "created_at": message.created_at.isoformat(),
        "tool_calls": [app_call(call) for call in reply.tool_calls.values()],
    }
    if isinstance(reply.outcome, ev.RunSuspended):
        out["run_id"] = turn.run_id
        out["pending"] = [
            app_call(call)
            for call in reply.tool_calls.values()
            if call.status == "awaiting_approval"
        ]
    return JSONResponse(out)


# the tasks the todo tools keep (parley.tools.todo.server), for the app's own pages

TaskId = Annotated[int, Path(ge=1, le=2**31 - 1)]
Title = Annotated[str, Field(min_length=1, max_length=500)]
Description = Annotated[str | None, Field(max_length=10_000)]


class TaskCreate(BaseModel):
    model_config = ConfigDict(extra="ignore")

    title: Title
    description: Description = None
    completed: bool = False


class TaskPatch(BaseModel):
    """The fields to change; one not sent is left as it is (``exclude_unset``)."""

    model_config = ConfigDict(extra="ignore")

    title: Title = ""
    description: Description = None
    completed: bool = False


def task_out(task: Task) -> dict[str, Any]:
    return {
        "id": task.id,
        "user_id": task.user_id,
        "title": task.title,
        "description": task.description,
        "completed": task.completed,
        "created_at": task.created_at.isoformat(),
        "updated_at": task.updated_at.isoformat(),
    }


@router.get("/api/{user_id}/tasks")
async def list_tasks(
    user: OwnUser, s: ServicesDep, completed: Annotated[bool | None, Query()] = None
) -> list[dict[str, Any]]:
    """The caller's tasks, oldest first: all, or only completed (true) or open (false) ones."""
    return [task_out(t) for t in await s.store.list_tasks(user, completed)]


@router.post("/api/{user_id}/tasks", status_code=201)
async def add_task(body: TaskCreate, user: OwnUser, s: ServicesDep) -> dict[str, Any]:
    task = await s.store.add_task(user, body.title, body.description)
    if body.completed:
        task = await s.store.update_task(user, task.id, completed=True)
    return task_out(task)


@router.get("/api/{user_id}/tasks/{task_id}")
async def get_task(task_id: TaskId, user: OwnUser, s: ServicesDep) -> dict[str, Any]:
    return task_out(await s.store.get_task(user, task_id))


@router.put("/api/{user_id}/tasks/{task_id}")
async def replace_task(
    task_id: TaskId, body: TaskCreate, user: OwnUser, s: ServicesDep
) -> dict[str, Any]:
    """The title, and the description and state when sent (a field not sent is kept)."""
    values = body.model_dump(exclude_unset=True)
    return task_out(await s.store.update_task(user, task_id, **values))


@router.patch("/api/{user_id}/tasks/{task_id}")
async def change_task(
    task_id: TaskId, body: TaskPatch, user: OwnUser, s: ServicesDep
) -> dict[str, Any]:
    values = body.model_dump(exclude_unset=True)
    if not values:
        raise ValidationFailed("nothing to change: send title, description or completed")
    return task_out(await s.store.update_task(user, task_id, **values))


@router.delete("/api/{user_id}/tasks/{task_id}")
async def delete_task(task_id: TaskId, user: OwnUser, s: ServicesDep) -> dict[str, Any]:
    await s.store.delete_task(user, task_id)
    return {"id": task_id, "deleted": True}
