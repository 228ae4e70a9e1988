"""Session chat: ``POST /sessions`` makes a session (a conversation), ``POST /sessions/{id}/chat
{message}`` answers with SSE ``event: chunk`` / ``complete`` / ``error``
(:class:`parley.protocols.seeds.SessionChatSSE`). An unknown session is a 404."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from parley.api import doors
from parley.api.deps import CurrentUser, ServicesDep
from parley.api.openapi import STREAM_RESPONSES
from parley.api.streaming import sse_response
from parley.engine.turn import TurnRequest
from parley.protocols.seeds import SessionChatSSE

router = APIRouter(prefix="/sessions", tags=["sessions"])


class SessionCreate(BaseModel):
    model_config = ConfigDict(extra="ignore")

    title: str | None = Field(default=None, max_length=500)
    model: str | None = Field(default=None, max_length=255)
    profile: str | None = Field(default=None, max_length=100)
    system: str | None = Field(default=None, max_length=100_000)


class SessionMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    message: str = Field(min_length=1, max_length=200_000)
    model: str | None = Field(default=None, max_length=255)


@router.post("", status_code=201)
async def create(
    user: CurrentUser, s: ServicesDep, body: SessionCreate | None = None
) -> dict[str, Any]:
    fields = (body or SessionCreate()).model_dump(exclude_none=True)
    if "profile" in fields:
        s.engine.profile(fields["profile"])
    convo = await s.store.create_conversation(user, metadata={"source": "sessions"}, **fields)
    return {
        "session_id": convo.id,
        "id": convo.id,
        "title": convo.title,
        "created_at": convo.created_at.isoformat(),
    }


@router.post("/{session_id}/chat", response_model=None, responses=STREAM_RESPONSES)
async def chat(
    session_id: str, body: SessionMessage, user: CurrentUser, s: ServicesDep
) -> Response:
    convo = await s.store.get_conversation(user, session_id)
    turn = await s.runs.start(user, convo.id, TurnRequest(content=body.message, model=body.model))
    events = doors.until_suspended(s.runs.turn_events(turn))
    encoder = SessionChatSSE(session_id=convo.id, run_id=turn.run_id)
    return sse_response(encoder, events, ping=s.settings.heartbeat_interval)
