"""The OpenAI Responses door: ``POST /v1/responses`` (stream and not), ``GET
/v1/responses/{id}`` and ``POST /v1/responses/{id}/cancel``, for the ``openai`` clients'
``responses`` API and ``@ai-sdk/openai``'s default ``openai("model")``.

A response is a parley run (``resp_<x>`` is ``run_<x>``) and lives in a parley conversation
marked ``metadata.source = "openai"``:

- with no ``previous_response_id`` nor ``conversation``, a new conversation holds the request's
  ``input`` items and the reply (as on the Chat Completions door, the client holds the history);
- ``previous_response_id`` continues that response's conversation from that response: only the
  new items are sent, and a response that is not the conversation's latest starts a branch;
- ``conversation`` (an id, or your own key, created on first use) appends to that conversation.

``instructions`` (and ``system``/``developer`` items) become the conversation's system prompt,
which later responses keep until new instructions replace it. Models are those of the Chat
Completions door: ``provider/model`` sees only the client's function ``tools`` (a call ends the
response with a ``function_call`` item; the client answers with ``function_call_output`` items),
``profile/NAME`` runs parley's own tools (a run waiting for an approval answers 409 ``approval_required``,
or an ``error`` event, naming the run in ``X-Run-Id``). ``background: true`` answers at once with
the response ``in_progress``; retrieve it until it ends, or cancel it. ``store: false`` is ignored:
parley keeps every exchange. A retrieved response carries its function calls while the run's
event log is kept (the run hub's ``ttl``), its text and usage after that. Reasoning is not
returned, and uploaded file ids are not supported (send ``file_data``/``image_url``).

Errors use OpenAI's shape ``{"error": {message, type, param, code}}`` (the Chat Completions
door's); inside a stream, an ``error`` event or ``response.failed``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from parley.api import doors
from parley.api.deps import CurrentCaller, Services, ServicesDep
from parley.api.openapi import OPENAI_ERROR_RESPONSES, STREAM_RESPONSES
from parley.api.routes.openai_compat import (
    CONVERSATION_HEADER,
    OpenAIRoute,
    model_target,
    openai_error,
)
from parley.api.streaming import sse_response
from parley.auth import Principal
from parley.chat import events as ev
from parley.engine.requests import TurnRequest
from parley.errors import NotFound, ValidationFailed, status_of
from parley.protocols import openai_responses as wire
from parley.protocols.openai_chat import suspended_message
from parley.store.values import Conversation, Run

router = APIRouter(
    prefix="/v1", tags=["openai"], route_class=OpenAIRoute, responses=OPENAI_ERROR_RESPONSES
)

RETRIEVE_WAIT = 2.0  # seconds to read a finished run's event log before using the stored reply


class FunctionTool(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: Literal["function"]
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")
    description: str | None = Field(default=None, max_length=10_000)
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ConversationRef(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str = Field(min_length=1, max_length=255)


class ResponseRequest(BaseModel):
    """The fields parley uses; the many others OpenAI clients send are accepted and ignored."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1, max_length=255)
    input: str | list[dict[str, Any]] = Field(default_factory=list, max_length=100_000)
    instructions: str | None = Field(default=None, max_length=100_000)
    previous_response_id: str | None = Field(default=None, max_length=255)
    conversation: Annotated[str, Field(min_length=1, max_length=255)] | ConversationRef | None = (
        None
    )
    stream: bool = False
    background: bool = False
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_output_tokens: int | None = Field(default=None, ge=1, le=1_000_000)
    tools: list[FunctionTool] | None = Field(default=None, max_length=512)
    tool_choice: Any = None
    metadata: dict[str, str] | None = Field(default=None, max_length=16)


@router.post("/responses", response_model=None, responses=STREAM_RESPONSES)
async def create(body: ResponseRequest, caller: CurrentCaller, s: ServicesDep) -> Response:
    profile, model_name = model_target(body.model, s)
    previous = await _previous(caller, s, body)
    references = await _references(caller, s, body)
    history = wire.input_history(body.input, body.instructions, references)
    external = _external_tools(body) if profile is None else []
    turn_request = TurnRequest(
        mode="send" if history.user_parts is not None else "continue",
        parts=history.user_parts or [],
        model=model_name,
        profile=profile,
        temperature=body.temperature,
        max_tokens=body.max_output_tokens,
        servers=[] if profile is None else None,
        external_tools=external,
    )
    _check_input(body, history)
    earlier = [parts for role, parts in history.messages if role == "user"]
    s.engine.check(turn_request, earlier=earlier)  # before the history is written
    convo = await _conversation(caller, s, body, previous, history)
    turn_request.parent_id = await _place(convo.user_id, s, convo, previous, history)
    turn = await s.runs.start(caller, convo.id, turn_request)
    builder = wire.ResponseBuilder(_meta(body, turn.run_id), frozenset(t["name"] for t in external))
    headers = {CONVERSATION_HEADER: convo.id, "X-Run-Id": turn.run_id}
    if body.background:
        return JSONResponse(builder.response(), headers=headers)
    events = doors.until_suspended(s.runs.turn_events(turn))
    if body.stream:
        encoder = wire.ResponseEvents(builder, extra_headers=headers)
        return sse_response(encoder, events, ping=s.settings.heartbeat_interval)
    outcome = await _fold(builder, events)
    if isinstance(outcome, ev.RunSuspended):
        message = suspended_message(outcome)
        return openai_error(409, message, code="approval_required", headers=headers)
    if isinstance(outcome, ev.RunFailed):
        status = status_of(outcome.code)
        return openai_error(status, outcome.message, code=outcome.code, headers=headers)
    return JSONResponse(builder.response(), headers=headers)


@router.get("/responses/{response_id}")
async def retrieve(response_id: str, caller: CurrentCaller, s: ServicesDep) -> dict[str, Any]:
    return await _stored_response(caller, s, await _run(caller, s, response_id))


@router.post("/responses/{response_id}/cancel")
async def cancel(response_id: str, caller: CurrentCaller, s: ServicesDep) -> dict[str, Any]:
    """Stop the response's run; the text so far is kept. A finished response is unchanged."""
    run = await _run(caller, s, response_id)
    await s.runs.cancel(caller, run.id)
    return await _stored_response(caller, s, await s.store.get_run(run.user_id, run.id))


# the request ----------------------------------------------------------------------------


def _external_tools(body: ResponseRequest) -> list[dict[str, Any]]:
    if not body.tools or body.tool_choice == "none":
        return []
    return [
        {
            "name": tool.name,
            "description": tool.description or "",
            "parameters": tool.parameters or {"type": "object", "properties": {}},
        }
        for tool in body.tools
    ]


def _check_input(body: ResponseRequest, history: wire.InputHistory) -> None:
    if history.user_parts is None and not history.messages and not history.earlier_outputs:
        raise ValidationFailed("input needs a user message or function_call_output items")
    if history.earlier_outputs and body.previous_response_id is None and not body.conversation:
        call_ids = ", ".join(history.earlier_outputs)
        raise ValidationFailed(f"function_call_output {call_ids}: no function_call before it")


def _meta(body: ResponseRequest, run_id: str) -> wire.ResponseMeta:
    return wire.ResponseMeta(
        run_id=run_id,
        model=body.model,
        created_at=int(time.time()),
        instructions=body.instructions,
        tools=[tool.model_dump(exclude_none=True) for tool in body.tools or []],
        tool_choice=body.tool_choice or "auto",
        temperature=body.temperature,
        max_output_tokens=body.max_output_tokens,
        previous_response_id=body.previous_response_id,
        metadata=body.metadata or {},
        background=body.background,
    )


async def _run(caller: Principal, s: Services, response_id: str) -> Run:
    run_id = wire.run_id_of(response_id)
    if run_id is None:
        raise NotFound(f"no response {response_id!r}")
    try:
        return await s.store.reach_run(caller, run_id)
    except NotFound:
        raise NotFound(f"no response {response_id!r}") from None


async def _previous(caller: Principal, s: Services, body: ResponseRequest) -> Run | None:
    if body.previous_response_id is None:
        return None
    if body.conversation is not None:
        raise ValidationFailed(
            "give previous_response_id or conversation, not both", field="previous_response_id"
        )
    try:
        return await _run(caller, s, body.previous_response_id)
    except NotFound as exc:
        raise ValidationFailed(exc.message, field="previous_response_id") from None


async def _references(caller: Principal, s: Services, body: ResponseRequest) -> dict[str, Any]:
    """The assistant messages that ``item_reference`` items name (``msg_<x>`` of response
    ``resp_<x>``), as input items; a reference to anything else is left unresolved."""
    found: dict[str, Any] = {}
    for item in body.input if isinstance(body.input, list) else ():
        item_id = item.get("id") if item.get("type") == "item_reference" else None
        run_id = wire.run_of_item(item_id) if isinstance(item_id, str) else None
        if run_id is None or item_id in found:
            continue
        with contextlib.suppress(NotFound):
            run = await s.store.reach_run(caller, run_id)
            message = await s.store.get_message(run.user_id, run.conversation_id, run.message_id)
            found[str(item_id)] = {"type": "message", "role": "assistant", "content": message.text}
    return found


# the conversation -----------------------------------------------------------------------


async def _conversation(
    caller: Principal,
    s: Services,
    body: ResponseRequest,
    previous: Run | None,
    history: wire.InputHistory,
) -> Conversation:
    """The conversation the response is kept in, with the input's system prompt, if any."""
    if previous is not None:
        convo = (await s.store.reach(caller, previous.conversation_id, "write")).conversation
    elif body.conversation is not None:
        key = body.conversation if isinstance(body.conversation, str) else body.conversation.id
        convo = await doors.conversation_for(s, caller, key, source="openai")
    else:
        return await s.store.create_conversation(
            caller.user_id, metadata={"source": "openai"}, system=history.system
        )
    if history.system is not None and history.system != convo.system:
        change = {"system": history.system}
        convo = await s.store.update_conversation(convo.user_id, convo.id, change)
    return convo


async def _place(
    user: str,
    s: Services,
    convo: Conversation,
    previous: Run | None,
    history: wire.InputHistory,
) -> str | None:
    """Write the input's earlier items after the message the response continues from (the
    previous response's, else the conversation's latest); the new user message's parent."""
    anchor = previous.message_id if previous is not None else convo.active_leaf_id
    if history.user_parts is None and not history.messages and anchor != convo.active_leaf_id:
        raise ValidationFailed(
            "function_call_output items answer the calls of the conversation's latest "
            "response only: send a user message to continue from an earlier one"
        )
    if history.earlier_outputs:
        if anchor is None:
            raise ValidationFailed("a function_call_output answers no function_call before it")
        await doors.record_tool_outputs(
            s,
            user,
            convo.id,
            anchor,
            history.earlier_outputs,
            refusal="function_call_output {unanswered}: no such call in the response",
            every=True,
        )
    for role, parts in history.messages:
        stored = await s.store.add_message(user, convo.id, role=role, parts=parts, parent_id=anchor)
        anchor = stored.id
    return anchor


# responses ------------------------------------------------------------------------------


async def _fold(builder: wire.ResponseBuilder, events: doors.Events) -> ev.EngineEvent | None:
    """Fold the response's events in (they end at the run's end or suspension); the last."""
    last: ev.EngineEvent | None = None
    async for _, last in events:
        builder.fold(last)
    return last


async def _stored_response(caller: Principal, s: Services, run: Run) -> dict[str, Any]:
    """A response from its run (reached by ``caller``): the event log while the hub keeps it,
    else the stored reply."""
    user = run.user_id
    convo = await s.store.get_conversation(user, run.conversation_id)
    meta = wire.ResponseMeta(
        run_id=run.id,
        model=run.model or "",
        created_at=int(run.created_at.timestamp()),
        instructions=convo.system,
    )
    if run.status not in ("running", "awaiting"):
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(RETRIEVE_WAIT):
                logged = [event async for _, event in s.runs.events(caller, run.id)]
            builder = wire.ResponseBuilder(meta, _client_calls(logged))
            for event in logged:
                builder.fold(event)
            return builder.response()
    message = await s.store.get_message(user, run.conversation_id, run.message_id)
    builder = wire.ResponseBuilder(meta)
    if message.text:
        builder.fold(ev.TextDelta(content=message.text))
    return builder.response()


def _client_calls(events: list[ev.EngineEvent]) -> frozenset[str]:
    """The tools whose calls parley handed to the client: those it never ran itself."""
    ran = {e.tool_call_id for e in events if isinstance(e, ev.ToolResult | ev.ToolFailed)}
    ran |= {e.tool_call_id for e in events if isinstance(e, ev.ApprovalRequested)}
    return frozenset(
        e.tool_name for e in events if isinstance(e, ev.ToolCallReady) and e.tool_call_id not in ran
    )
