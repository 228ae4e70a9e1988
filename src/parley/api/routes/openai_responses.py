"""The OpenAI Responses door: ``POST /v1/responses`` (stream and not), ``GET
/v1/responses/{id}`` (with ``?stream=true``, its events again, after ``starting_after`` when
given: a client that lost its stream resumes, on any process) and ``POST
/v1/responses/{id}/cancel``, for the ``openai`` clients' ``responses`` API and
``@ai-sdk/openai``'s default ``openai("model")``.

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

from fastapi import APIRouter, Query
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


@router.get("/responses/{response_id}", response_model=None, responses=STREAM_RESPONSES)
async def retrieve(
    response_id: str,
    caller: CurrentCaller,
    s: ServicesDep,
    stream: bool = False,
    starting_after: Annotated[int | None, Query(ge=0)] = None,
) -> Response:
    """The response; with ``stream=true`` its events from the start, or after the one whose
    ``sequence_number`` is ``starting_after`` (a client that lost its stream, on any process)."""
    run = await _run(caller, s, response_id)
    if stream:
        return await _replay(caller, s, run, starting_after)
    return JSONResponse(await _stored_response(caller, s, run))


@router.post("/responses/{response_id}/cancel")
async def cancel(response_id: str, caller: CurrentCaller, s: ServicesDep) -> dict[str, Any]:
    """Stop the response's run; the text so far is kept. A finished response is unchanged."""
    run = await _run(caller, s, response_id)
    if await s.runs.cancel(caller, run.id) == "cancelled":
        await _ended(caller, s, run.id)  # another process may still be stopping it
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


def _stored_meta(run: Run, convo: Conversation) -> wire.ResponseMeta:
    """What a response kept after its request: its run's model and time, the system prompt."""
    return wire.ResponseMeta(
        run_id=run.id,
        model=run.model or "",
        created_at=int(run.created_at.timestamp()),
        instructions=convo.system,
    )


async def _stored_response(caller: Principal, s: Services, run: Run) -> dict[str, Any]:
    """A response from its run (reached by ``caller``): the event log while the hub keeps it,
    else the stored reply."""
    user = run.user_id
    convo = await s.store.get_conversation(user, run.conversation_id)
    meta = _stored_meta(run, convo)
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


async def _replay(caller: Principal, s: Services, run: Run, starting_after: int | None) -> Response:
    """The response's stream told again from the run's log: the same events with the same
    ``sequence_number`` as the stream that created it, to the run's end or the suspension it
    waits in now."""
    convo = await s.store.get_conversation(run.user_id, run.conversation_id)
    builder = wire.ResponseBuilder(_stored_meta(run, convo))

    async def is_current() -> bool:
        return await doors.run_awaiting(s, run.user_id, run.id)

    events = _whose_calls(s.runs.events(caller, run.id), builder)
    headers = {CONVERSATION_HEADER: convo.id, "X-Run-Id": run.id}
    encoder = wire.ResponseEvents(builder, extra_headers=headers, starting_after=starting_after)
    told = doors.until_suspended(events, is_current)
    return sse_response(encoder, told, ping=s.settings.heartbeat_interval)


# what a replay tells a client's tool call from parley's by
_PARLEYS = (
    ev.ToolResult,
    ev.ToolFailed,
    ev.ToolProgress,
    ev.ApprovalRequested,
    ev.ElicitationRequested,
)
_ENDS = (ev.RunFinished, ev.RunFailed, ev.RunSuspended)


async def _whose_calls(events: doors.Events, builder: wire.ResponseBuilder) -> doors.Events:
    """A run's events for a replay, which was not told the request's tools: from a tool call's
    start they are held until the run shows whose calls they are (parley's when it runs one,
    else the client's when the run ends), then given on in order, so that the replay numbers
    its events as the stream that created the response did."""
    held: list[tuple[int, ev.EngineEvent]] = []
    try:
        async for seq, event in events:
            if not held and not isinstance(event, ev.ToolCallStarted):
                yield seq, event
                continue
            held.append((seq, event))
            if isinstance(event, _ENDS):  # parley ran none of the calls: they are the client's
                calls = {e.tool_name for _, e in held if isinstance(e, ev.ToolCallStarted)}
                builder.external = builder.external | calls
            if isinstance(event, _PARLEYS + _ENDS):
                for item in held:
                    yield item
                held.clear()
        for item in held:
            yield item
    finally:
        close = getattr(events, "aclose", None)
        if close is not None:
            await close()


async def _ended(caller: Principal, s: Services, run_id: str) -> None:
    """Wait, a little, until the run's log has its end (or a suspension)."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(RETRIEVE_WAIT):
            async for _ in doors.until_suspended(s.runs.events(caller, run_id)):
                pass


def _client_calls(events: list[ev.EngineEvent]) -> frozenset[str]:
    """The tools whose calls parley handed to the client: those it never ran itself."""
    ran = {e.tool_call_id for e in events if isinstance(e, ev.ToolResult | ev.ToolFailed)}
    ran |= {e.tool_call_id for e in events if isinstance(e, ev.ApprovalRequested)}
    return frozenset(
        e.tool_name for e in events if isinstance(e, ev.ToolCallReady) and e.tool_call_id not in ran
    )
