"""What ``/openapi.json`` says about responses beyond FastAPI's defaults: the error shapes, and
the routes that answer with a stream (server-sent events, or the ai@4 Data Stream protocol)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

Responses = dict[int | str, dict[str, Any]]


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    """The contract's error body (DESIGN.md section 3); the code is also in ``X-Error-Code``."""

    success: Literal[False]
    error: ErrorDetail


class OpenAIErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class OpenAIErrorResponse(BaseModel):
    """OpenAI's error shape, used by the ``/v1`` routes."""

    error: OpenAIErrorDetail


class TodoErrorResponse(BaseModel):
    """The todo app's error shape, on its routes; the code is in ``X-Error-Code``."""

    error: str


ERROR_RESPONSES: Responses = {
    "4XX": {"model": ErrorResponse, "description": "The request is refused"},
    "5XX": {"model": ErrorResponse, "description": "parley or a provider failed"},
}
OPENAI_ERROR_RESPONSES: Responses = {
    "4XX": {"model": OpenAIErrorResponse, "description": "The request is refused"},
    "5XX": {"model": OpenAIErrorResponse, "description": "parley or a provider failed"},
}
TODO_ERROR_RESPONSES: Responses = {
    "4XX": {"model": TodoErrorResponse, "description": "The request is refused"},
    "5XX": {"model": TodoErrorResponse, "description": "parley or a provider failed"},
}
STREAM_RESPONSES: Responses = {
    200: {"description": "A stream of server-sent events", "content": {"text/event-stream": {}}},
}
RESUME_RESPONSES: Responses = {
    **STREAM_RESPONSES,
    204: {"description": "Nothing to resume: no run is active in this chat"},
}
PLAYGROUND_RESPONSES: Responses = {
    200: {
        "description": "The UI message stream (server-sent events), or to an ai@4 client the "
        "ai@4 Data Stream protocol (one `<code>:<json>` part a line)",
        "content": {"text/event-stream": {}, "text/plain": {}},
    },
}
AI4_RESUME_RESPONSES: Responses = {
    200: {
        "description": "The active run in the ai@4 Data Stream protocol; empty when none is",
        "content": {"text/plain": {}},
    },
}
