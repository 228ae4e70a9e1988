"""The OpenAI door: ``GET /v1/models`` and ``POST /v1/chat/completions`` for any OpenAI client.

Use ``base_url="http://host:8000/v1"`` and a parley token as the API key. A model is either
``provider/model`` (one of ``GET /v1/models``, or any model of a configured provider) or
``profile/NAME``:

- with a profile, parley runs the profile's tools itself (approvals included: a run that must
  wait for one answers 409 / a stream error ``approval_required``, to be answered on the native
  ``POST /api/runs/{run_id}/approvals/{tool_call_id}``; ``X-Run-Id`` names the run);
- with a provider model the model sees only the client's ``tools``, and calls to them come back
  to the client (``finish_reason: "tool_calls"``), which runs them and sends the results.

OpenAI clients hold the history: the ``messages`` array is the history of the request. Each
request runs in a new conversation of the caller marked ``metadata.source = "openai"``, seeded
with that history (the audit log and usage accounting need one). With the header
``X-Parley-Conversation: <conversation id or your own id>`` the exchange is kept in that
conversation instead (created on first use): once it has messages, its stored history is the
truth, and from ``messages`` parley takes only the new user message, or the results of the
tool calls of its last reply. Responses name the conversation in ``X-Parley-Conversation``.

Errors use OpenAI's shape ``{"error": {message, type, param, code}}``: 401 for a bad token, 404
``model_not_found`` for an unknown model, 400 for a bad request; inside a stream,
``data: {"error": {...}}``. Streams carry only ``data:`` lines.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from parley.api import doors
from parley.api.deps import CurrentCaller, CurrentUser, Services, ServicesDep
from parley.api.openapi import OPENAI_ERROR_RESPONSES, STREAM_RESPONSES
from parley.api.streaming import sse_response
from parley.auth import Principal
from parley.chat import events as ev
from parley.engine.profiles import BUILTIN_PROFILES
from parley.engine.requests import TurnRequest
from parley.errors import InvalidModel, ParleyError, RateLimited, ValidationFailed
from parley.protocols.openai_chat import (
    ClientHistory,
    OpenAIChunks,
    client_history,
    completion,
    error_body,
    suspended_message,
)
from parley.protocols.reply import collect
from parley.store.values import Conversation

CONVERSATION_HEADER = "X-Parley-Conversation"


def openai_error(
    status: int,
    message: str,
    *,
    code: str | None = None,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    extra = dict(headers or {})
    if status < 500 and status != 429:
        extra["x-should-retry"] = "false"
    body = error_body(status, message, code=code, param=param)
    return JSONResponse(body, status_code=status, headers=extra)


def _from_parley(exc: ParleyError) -> JSONResponse:
    if isinstance(exc, InvalidModel):
        return openai_error(404, exc.message, code="model_not_found", param="model")
    if isinstance(exc, RateLimited):
        return openai_error(429, exc.message, headers={"Retry-After": str(exc.retry_after)})
    return openai_error(exc.status, exc.message, param=exc.extra.get("field"))


def _from_validation(exc: RequestValidationError) -> JSONResponse:
    error = exc.errors()[0] if exc.errors() else {}
    where = [str(p) for p in error.get("loc", ()) if p != "body"]
    message = f"{'.'.join(where) or 'body'}: {error.get('msg', 'invalid')}"
    return openai_error(400, message, param=where[0] if where else None)


def in_openai_shape(
    handler: Callable[[Request], Awaitable[Response]],
) -> Callable[[Request], Coroutine[Any, Any, Response]]:
    """``handler`` with its errors (the token check included) in OpenAI's shape."""

    async def route(request: Request) -> Response:
        try:
            return await handler(request)
        except ParleyError as exc:
            return _from_parley(exc)
        except RequestValidationError as exc:
            return _from_validation(exc)

    return route


class OpenAIRoute(APIRoute):
    """Errors of these routes (the token check included) in OpenAI's shape, not parley's."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        return in_openai_shape(super().get_route_handler())


router = APIRouter(
    prefix="/v1", tags=["openai"], route_class=OpenAIRoute, responses=OPENAI_ERROR_RESPONSES
)


class FunctionSpec(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")
    description: str = Field(default="", max_length=10_000)
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object"})


class ToolDef(BaseModel):
    type: Literal["function"] = "function"
    function: FunctionSpec


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: bool = False


class CompletionRequest(BaseModel):
    """The fields parley uses; the many others OpenAI clients send are accepted and ignored."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1, max_length=255)
    messages: list[dict[str, Any]] = Field(min_length=1, max_length=100_000)
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1, le=1_000_000)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=1_000_000)
    tools: list[ToolDef] | None = Field(default=None, max_length=512)
    tool_choice: Any = None
    n: int | None = Field(default=None, ge=1, le=1)


# models ------------------------------------------------------------------------------------


def _model_ids(s: Services) -> list[str]:
    profiles = sorted({*s.settings.profiles, *BUILTIN_PROFILES})
    return s.providers.configured_models() + [f"profile/{name}" for name in profiles]


def _model_object(model_id: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": 0, "owned_by": model_id.split("/")[0]}


@router.get("/models")
async def models(user: CurrentUser, s: ServicesDep) -> dict[str, Any]:
    return {"object": "list", "data": [_model_object(m) for m in _model_ids(s)]}


@router.get("/models/{model_id:path}")
async def model(model_id: str, user: CurrentUser, s: ServicesDep) -> dict[str, Any]:
    if model_id not in _model_ids(s):
        raise InvalidModel(f"the model {model_id!r} does not exist")
    return _model_object(model_id)


def model_target(name: str, s: Services) -> tuple[str | None, str | None]:
    """``(profile, None)`` for ``profile/NAME``, else ``(None, model)``; unknown ones raise."""
    if name.startswith("profile/"):
        profile = name.removeprefix("profile/")
        try:
            s.engine.profile(profile)
        except ValidationFailed:
            raise InvalidModel(f"the model {name!r} does not exist (no such profile)") from None
        return profile, None
    s.providers.resolve(name)
    return None, name


# chat completions --------------------------------------------------------------------------


@router.post("/chat/completions", response_model=None, responses=STREAM_RESPONSES)
async def completions(
    body: CompletionRequest, request: Request, caller: CurrentCaller, s: ServicesDep
) -> Response:
    profile, model_name = model_target(body.model, s)
    history = client_history(body.messages)
    external = _external_tools(body) if profile is None else []
    turn_request = TurnRequest(
        mode="send" if history.user_parts is not None else "continue",
        parts=history.user_parts or [],
        model=model_name,
        profile=profile,
        temperature=body.temperature,
        max_tokens=body.max_completion_tokens or body.max_tokens,
        servers=[] if profile is None else None,
        external_tools=external,
    )
    earlier = [parts for role, parts in history.messages if role == "user"]
    s.engine.check(turn_request, earlier=earlier)  # before the history is written
    convo = await _conversation(request.headers.get(CONVERSATION_HEADER), caller, s, history)
    turn = await s.runs.start(caller, convo.id, turn_request)
    names = frozenset(spec["name"] for spec in external)
    completion_id = "chatcmpl-" + turn.run_id.removeprefix("run_")
    headers = {CONVERSATION_HEADER: convo.id, "X-Run-Id": turn.run_id}
    events = doors.until_suspended(s.runs.turn_events(turn))
    if body.stream:
        encoder = OpenAIChunks(
            completion_id=completion_id,
            model=body.model,
            include_usage=bool(body.stream_options and body.stream_options.include_usage),
            external=names,
            extra_headers=headers,
        )
        return sse_response(encoder, events, ping=s.settings.heartbeat_interval)
    reply = await collect(events)
    if isinstance(reply.outcome, ev.RunFailed):
        failure = reply.outcome
        return openai_error(failure.status, failure.message, code=failure.code, headers=headers)
    if isinstance(reply.outcome, ev.RunSuspended):
        message = suspended_message(reply.outcome)
        return openai_error(409, message, code="approval_required", headers=headers)
    created = int(time.time())
    body_out = completion(
        reply, completion_id=completion_id, model=body.model, external=names, created=created
    )
    return JSONResponse(body_out, headers=headers)


def _external_tools(body: CompletionRequest) -> list[dict[str, Any]]:
    if not body.tools or body.tool_choice == "none":
        return []
    return [
        {
            "name": tool.function.name,
            "description": tool.function.description,
            "parameters": tool.function.parameters,
        }
        for tool in body.tools
    ]


async def _conversation(
    key: str | None, caller: Principal, s: Services, history: ClientHistory
) -> Conversation:
    """The conversation this exchange is kept in, holding the history the model must see."""
    if key:
        convo = await doors.conversation_for(s, caller, key, source="openai", system=history.system)
    else:
        convo = await s.store.create_conversation(
            caller.user_id, metadata={"source": "openai"}, system=history.system
        )
    user = convo.user_id
    if convo.active_leaf_id is None:
        await _seed(user, s, convo, history)
    elif history.user_parts is None:
        await doors.record_tool_outputs(
            s,
            user,
            convo.id,
            convo.active_leaf_id or "",
            history.tool_outputs,
            refusal="the last message must be a user message, or tool results for the tool "
            "calls of this conversation's last reply",
        )
    return convo


async def _seed(user: str, s: Services, convo: Conversation, history: ClientHistory) -> None:
    parent: str | None = None
    for role, parts in history.messages:
        stored = await s.store.add_message(user, convo.id, role=role, parts=parts, parent_id=parent)
        parent = stored.id
