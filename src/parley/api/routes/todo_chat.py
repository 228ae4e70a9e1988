"""The todo assistant: ``POST /api/{user_id}/chat {message, conversation_id?}`` with the ``todo``
profile (the built-in todo tools and a task-assistant prompt).

The answer is ``{message_id, conversation_id, role, content, created_at, tool_calls}``, or with
``Accept: text/event-stream`` the stream of :class:`parley.protocols.seeds.TodoChatSSE`. A reply
that waits for a tool approval comes back with ``pending`` (and ``approval_required`` in the
stream); answer it on ``POST /api/runs/{run_id}/approvals/{tool_call_id}``. ``{user_id}`` must be
the token's ``sub`` (403 otherwise).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from parley.api import doors
from parley.api.deps import CurrentUser, ServicesDep, same_user
from parley.api.errors import error_response
from parley.api.openapi import STREAM_RESPONSES
from parley.api.streaming import sse_response
from parley.chat import events as ev
from parley.engine.turn import TurnRequest
from parley.protocols.reply import collect
from parley.protocols.seeds import TodoChatSSE

router = APIRouter(tags=["todo"])

PROFILE = "todo"


class TodoMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    message: str = Field(min_length=1, max_length=200_000)
    conversation_id: str | int | None = None


@router.post("/api/{user_id}/chat", response_model=None, responses=STREAM_RESPONSES)
async def chat(
    user_id: str, body: TodoMessage, request: Request, user: CurrentUser, s: ServicesDep
) -> Response:
    same_user(user_id, user)
    if body.conversation_id is not None:
        convo = await s.store.get_conversation(user, str(body.conversation_id))
    else:
        convo = await s.store.create_conversation(
            user, profile=PROFILE, metadata={"source": "todo"}
        )
    turn = await s.runs.start(user, convo.id, TurnRequest(content=body.message, profile=PROFILE))
    events = doors.until_suspended(s.runs.turn_events(turn))
    if "text/event-stream" in request.headers.get("accept", ""):
        encoder = TodoChatSSE(conversation_id=convo.id, run_id=turn.run_id)
        return sse_response(encoder, events, ping=s.settings.heartbeat_interval)
    reply = await collect(events)
    if isinstance(reply.outcome, ev.RunFailed):
        code = reply.outcome.code
        return error_response(doors.status_for(code), code, reply.outcome.message)
    message = await s.store.get_message(user, convo.id, turn.message_id)
    out: dict[str, Any] = {
        "message_id": message.id,
        "conversation_id": convo.id,
        "role": "assistant",
        "content": reply.text,
        "created_at": message.created_at.isoformat(),
        "tool_calls": [call.as_dict() for call in reply.tool_calls.values()],
    }
    if isinstance(reply.outcome, ev.RunSuspended):
        out["run_id"] = turn.run_id
        out["pending"] = [
            call.as_dict()
            for call in reply.tool_calls.values()
            if call.status == "awaiting_approval"
        ]
    return JSONResponse(out)
