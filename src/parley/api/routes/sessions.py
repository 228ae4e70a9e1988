"""Session chat: ``POST /sessions`` makes a session (a conversation), ``POST /sessions/{id}/chat
{message}`` answers with SSE ``event: chunk`` / ``complete`` / ``error``
(:class:`parley.protocols.seeds.SessionChatSSE`); ``GET /sessions``, ``GET /sessions/{id}`` (with
its messages) and ``DELETE /sessions/{id}``.

Its clients read the seed's codes: ``NOT_FOUND`` for an unknown session and ``API_KEY_MISSING``
(a JSON 500 before any stream starts) in the contract's error shape; ``AI_ERROR`` for a failed
turn and ``STREAM_ERROR`` for a broken stream in the stream. Its clients send no token: they
are served by ``PARLEY_AUTH=none`` (one local user), or send a bearer token like any other.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from parley.api import doors
from parley.api.deps import CurrentCaller, CurrentUser, ServicesDep
from parley.api.errors import DoorRoute, error_response
from parley.api.openapi import STREAM_RESPONSES
from parley.api.streaming import sse_response
from parley.chat import events as ev
from parley.engine.requests import TurnRequest
from parley.errors import ApiKeyMissing, ParleyError, RateLimited
from parley.protocols.base import Frames
from parley.protocols.seeds import SessionChatSSE
from parley.store.values import Conversation, Message

# the seed's own codes, where it has one for the error; parley's elsewhere
SEED_CODES = {"ERR_NOT_FOUND": "NOT_FOUND", "ERR_API_KEY_MISSING": "API_KEY_MISSING"}


class SessionRoute(DoorRoute):
    """The contract's error shape with the session chat's codes (:data:`SEED_CODES`)."""

    @staticmethod
    def render(exc: ParleyError) -> Response:
        headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, RateLimited) else None
        status = 500 if isinstance(exc, ApiKeyMissing) else exc.status  # the seed's JSON 500
        return error_response(status, SEED_CODES.get(exc.code, exc.code), exc.message, headers)


class SeedSessionSSE(SessionChatSSE):
    """The session stream with the seed's codes: a failed turn is ``AI_ERROR``, a stream that
    broke after its first byte ``STREAM_ERROR``."""

    def encode(self, seq: int, event: ev.EngineEvent) -> Frames:
        if isinstance(event, ev.RunFailed):
            return self.error_frames("AI_ERROR", event.message)
        return super().encode(seq, event)

    def on_error(self, exc: Exception) -> Frames:
        return self.error_frames("STREAM_ERROR", "the stream failed")


router = APIRouter(prefix="/sessions", tags=["sessions"], route_class=SessionRoute)


class SessionCreate(BaseModel):
    model_config = ConfigDict(extra="ignore")

    title: str | None = Field(default=None, max_length=500)
    model: str | None = Field(default=None, max_length=255)
    profile: str | None = Field(default=None, max_length=100)
    system: str | None = Field(default=None, max_length=100_000)


class SessionMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    message: str = Field(min_length=1)  # its limits are every door's (Engine.check)
    model: str | None = Field(default=None, max_length=255)


def session_out(convo: Conversation) -> dict[str, Any]:
    return {
        "session_id": convo.id,
        "id": convo.id,
        "title": convo.title,
        "created_at": convo.created_at.isoformat(),
        "updated_at": convo.updated_at.isoformat(),
    }


def session_message_out(message: Message) -> dict[str, Any]:
    return {
        "id": message.id,
        "role": message.role,
        "content": message.text,
        "status": message.status,
        "created_at": message.created_at.isoformat(),
    }


@router.post("", status_code=201)
async def create(
    user: CurrentUser, s: ServicesDep, body: SessionCreate | None = None
) -> dict[str, Any]:
    fields = (body or SessionCreate()).model_dump(exclude_none=True)
    if "profile" in fields:
        s.engine.profile(fields["profile"])
    convo = await s.store.create_conversation(user, metadata={"source": "sessions"}, **fields)
    return session_out(convo)


@router.get("")
async def list_(
    user: CurrentUser,
    s: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> dict[str, Any]:
    """The caller's sessions (every conversation of theirs), newest first."""
    items, next_cursor = await s.store.list_conversations(user, limit=limit, cursor=cursor)
    return {"sessions": [session_out(c) for c in items], "next_cursor": next_cursor}


@router.get("/{session_id}")
async def get(
    session_id: str,
    caller: CurrentCaller,
    s: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 500,
) -> dict[str, Any]:
    """The session with the newest ``limit`` messages of its active branch, oldest first."""
    convo = (await s.store.reach(caller, session_id)).conversation
    page, _ = await s.store.messages_before(
        convo.user_id, session_id, before=None, limit=limit, convo=convo
    )
    return {**session_out(convo), "messages": [session_message_out(m) for m in page]}


@router.delete("/{session_id}", status_code=204)
async def delete(session_id: str, caller: CurrentCaller, s: ServicesDep) -> Response:
    user = (await s.store.reach(caller, session_id, "admin")).owner
    await s.store.delete_conversation(user, session_id)
    return Response(status_code=204)


@router.post("/{session_id}/chat", response_model=None, responses=STREAM_RESPONSES)
async def chat(
    session_id: str, body: SessionMessage, caller: CurrentCaller, s: ServicesDep
) -> Response:
    request = TurnRequest(content=body.message, model=body.model)
    turn = await s.runs.start(caller, session_id, request)  # a 404 for another user's
    events = doors.until_suspended(s.runs.turn_events(turn))
    encoder = SeedSessionSSE(session_id=turn.conversation_id, run_id=turn.run_id)
    return sse_response(encoder, events, ping=s.settings.heartbeat_interval)
