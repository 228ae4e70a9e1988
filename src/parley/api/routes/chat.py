"""The native chat door: send, regenerate and edit answer with native SSE or one JSON reply.
Each needs ``write`` in the conversation (a project's member's role; the owner's own)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.responses import Response

from parley.api.deps import CurrentCaller, Services, ServicesDep
from parley.api.openapi import STREAM_RESPONSES
from parley.api.schemas import ChatBody, EditMessage, Regenerate, SendMessage
from parley.api.streaming import sse_response
from parley.api.views import message_out, pending_out
from parley.chat import events as ev
from parley.chat.messages import Part
from parley.engine.requests import PreparedTurn, TurnRequest
from parley.errors import ValidationFailed
from parley.protocols.native_sse import NativeSSE, UnnamedSSE

router = APIRouter(prefix="/api/conversations", tags=["chat"])


def wants_json(request: Request, stream: bool | None) -> bool:
    if stream is not None:
        return not stream
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/event-stream" not in accept


def check_message(body: SendMessage, s: Services) -> list[Part]:
    """The message's parts, or a clear 4xx. Its limits are every door's, held by the engine
    (:meth:`parley.engine.turn.Engine.check`)."""
    if not body.content.strip() and not body.attachments:
        raise ValidationFailed("the message is empty")
    return [a.to_part(f"attachments[{i}]") for i, a in enumerate(body.attachments)]


async def respond(request: Request, body: ChatBody, turn: PreparedTurn, s: Services) -> Response:
    """The run as native SSE (unnamed events for EditorChat's client), or one JSON reply."""
    events = s.runs.turn_events(turn)
    if not wants_json(request, body.streaming):
        sse = UnnamedSSE if body.unnamed_events else NativeSSE
        encoder = sse(run_id=turn.run_id, conversation_id=turn.conversation_id)
        return sse_response(encoder, events, ping=s.settings.heartbeat_interval)
    outcome: ev.EngineEvent | None = None
    async for _, event in events:
        if isinstance(event, ev.RunFinished | ev.RunFailed | ev.RunSuspended):
            outcome = event
            break
    return JSONResponse(await _json_reply(turn, outcome, s), status_code=200)


async def _json_reply(
    turn: PreparedTurn, outcome: ev.EngineEvent | None, s: Services
) -> dict[str, Any]:
    message = await s.store.get_message(turn.user_id, turn.conversation_id, turn.message_id)
    reply: dict[str, Any] = {
        "run_id": turn.run_id,
        "conversation_id": turn.conversation_id,
        "user_message_id": turn.user_message_id,
        "message": message_out(message),
    }
    if turn.side_effects:
        reply["side_effects"] = turn.side_effects
    if isinstance(outcome, ev.RunFailed):
        reply["error"] = {"code": outcome.code, "message": outcome.message}
    if isinstance(outcome, ev.RunSuspended):
        pending = await s.store.pending_for_run(turn.user_id, turn.run_id)
        reply["pending"] = [pending_out(p) for p in pending if p.status == "pending"]
    return reply


@router.post("/{conversation_id}/messages", response_model=None, responses=STREAM_RESPONSES)
async def send(
    conversation_id: str, body: SendMessage, request: Request, caller: CurrentCaller, s: ServicesDep
) -> Response:
    parts = check_message(body, s)
    turn = await s.runs.start(
        caller,
        conversation_id,
        TurnRequest(
            content=body.content or None,
            parts=parts,
            parent_id=body.parent_id,
            model=body.model,
            temperature=body.temperature,
            max_tokens=body.max_tokens,
            profile=body.profile,
        ),
    )
    return await respond(request, body, turn, s)


@router.post(
    "/{conversation_id}/messages/{message_id}/regenerate",
    response_model=None,
    responses=STREAM_RESPONSES,
)
async def regenerate(
    conversation_id: str,
    message_id: str,
    request: Request,
    caller: CurrentCaller,
    s: ServicesDep,
    body: Regenerate | None = None,
) -> Response:
    body = body or Regenerate()
    turn = await s.runs.start(
        caller,
        conversation_id,
        TurnRequest(
            mode="regenerate", target_id=message_id, model=body.model, temperature=body.temperature
        ),
    )
    return await respond(request, body, turn, s)


@router.put(
    "/{conversation_id}/messages/{message_id}", response_model=None, responses=STREAM_RESPONSES
)
async def edit(
    conversation_id: str,
    message_id: str,
    body: EditMessage,
    request: Request,
    caller: CurrentCaller,
    s: ServicesDep,
) -> Response:
    parts = check_message(body, s)
    turn = await s.runs.start(
        caller,
        conversation_id,
        TurnRequest(
            mode="edit",
            target_id=message_id,
            content=body.content or None,
            parts=parts,
            model=body.model,
            temperature=body.temperature,
            max_tokens=body.max_tokens,
        ),
    )
    return await respond(request, body, turn, s)
