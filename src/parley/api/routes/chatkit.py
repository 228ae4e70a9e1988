"""The ChatKit door: ``POST /chatkit`` speaks the server protocol of ``openai-chatkit``.

Point ChatKit.js's ``api.url`` at it and send the parley token through ``api.fetch``. Every
operation is one POST ``{type, params, metadata?}``, parsed with ``chatkit.types``' own request
union. The streaming ones (``threads.create``, ``threads.add_user_message``,
``threads.add_client_tool_output``, ``threads.retry_after_item``, ``threads.custom_action``)
answer ``text/event-stream`` of ``ThreadStreamEvent`` (:mod:`parley.protocols.chatkit`), the
others JSON. Threads are the caller's conversations, items the messages of a conversation's
active branch; parley's store is the only store (``ChatKitServer`` is not used: it writes the
items itself, where parley's engine writes the turn).

- ``threads.retry_after_item`` regenerates the reply to that user message as a new branch
  (the later items leave the thread, as in ChatKit, and stay in parley's history).
- ``threads.custom_action`` with the action ``parley.approval`` (the buttons of an approval's
  widget) answers a tool approval and streams the rest of the reply.
- Client tools: ``metadata.client_tools: [{name, description?, parameters?}]`` are offered to
  the model; a call to one ends the reply with a pending ``client_tool_call``, and
  ``threads.add_client_tool_output`` (with the same ``metadata``) continues the thread with its
  result. ``inference_options.model`` picks a parley model (``provider/model``).
- ``stream_options.allow_cancel`` is false: a run goes on when its client leaves (DESIGN.md);
  ``POST /api/runs/{run_id}/cancel`` stops it (``X-Run-Id`` names it).
- Not served: attachments (``attachments.*`` and files in a message), ``input.transcribe``,
  ``threads.add_structured_input``, ``threads.sync_custom_action``: a 400. ``items.feedback``
  is accepted and not kept, as ``ChatKitServer`` does by default.

Errors before a stream starts (a bad body, an unknown or another user's thread, a limit) are
HTTP statuses in the contract's shape: ChatKit defines no HTTP error body (``ChatKitServer``
lets them become a 500). After the first byte a failure is ChatKit's ``error`` event.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from chatkit.types import (
    ChatKitReq,
    ItemsFeedbackReq,
    ItemsListReq,
    Page,
    StreamOptions,
    StreamOptionsEvent,
    Thread,
    ThreadCreatedEvent,
    ThreadItem,
    ThreadItemDoneEvent,
    ThreadsAddClientToolOutputReq,
    ThreadsAddUserMessageReq,
    ThreadsCreateReq,
    ThreadsCustomActionReq,
    ThreadsDeleteReq,
    ThreadsGetByIdReq,
    ThreadsListReq,
    ThreadsRetryAfterItemReq,
    ThreadStreamEvent,
    ThreadsUpdateReq,
    UserMessageInput,
    UserMessageItem,
)
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, TypeAdapter, ValidationError
from starlette.responses import Response

from parley.api import doors
from parley.api.deps import CurrentCaller, Services, ServicesDep
from parley.api.errors import DoorRoute, parley_error_response
from parley.api.streaming import sse_response
from parley.auth import Principal
from parley.chat import events as ev
from parley.engine.requests import PreparedTurn, TurnRequest
from parley.errors import Conflict, ParleyError, ValidationFailed
from parley.protocols import chatkit as wire
from parley.store.values import Conversation, Role, utcnow

DEFAULT_PAGE = 20  # ChatKitServer's page size
MAX_PAGE = 200
REQUEST: TypeAdapter[ChatKitReq] = TypeAdapter(ChatKitReq)
STREAMING_REQUESTS = (
    "threads.create",
    "threads.add_user_message",
    "threads.add_client_tool_output",
    "threads.retry_after_item",
    "threads.custom_action",
)
OPERATIONS = (
    *STREAMING_REQUESTS,
    "threads.get_by_id",
    "threads.list",
    "items.list",
    "threads.update",
    "threads.delete",
    "items.feedback",
)


class ChatKitRoute(DoorRoute):
    """The contract's error shape; a body that does not parse is a 400."""

    validation_status = 400

    @staticmethod
    def render(exc: ParleyError) -> Response:
        return parley_error_response(exc)


REQUEST_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["type", "params"],
                "properties": {
                    "type": {"type": "string", "enum": list(OPERATIONS)},
                    "params": {"type": "object"},
                    "metadata": {"type": "object"},
                },
            }
        }
    },
}
RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "ThreadStreamEvents (server-sent events) for the streaming operations, "
        "JSON for the others",
        "content": {"text/event-stream": {}, "application/json": {}},
    },
}

router = APIRouter(tags=["chatkit"], route_class=ChatKitRoute)


class ClientTool(BaseModel):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")
    description: str = Field(default="", max_length=10_000)
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object"})


class Metadata(BaseModel):
    client_tools: list[ClientTool] = Field(default_factory=list, max_length=128)


class Approval(BaseModel):
    tool_call_id: str = Field(max_length=255)
    approved: bool


@router.post(
    "/chatkit",
    response_model=None,
    responses=RESPONSES,
    openapi_extra={"requestBody": REQUEST_BODY},
)
async def chatkit(request: Request, caller: CurrentCaller, s: ServicesDep) -> Response:
    req = _parse(await request.body())
    tools = _client_tools(req.metadata)
    match req:
        case ThreadsCreateReq():
            return await _create(req, caller, s, tools)
        case ThreadsAddUserMessageReq():
            return await _add_message(req, caller, s, tools)
        case ThreadsAddClientToolOutputReq():
            return await _tool_output(req, caller, s, tools)
        case ThreadsRetryAfterItemReq():
            return await _retry(req, caller, s, tools)
        case ThreadsCustomActionReq():
            return await _custom_action(req, caller, s, tools)
        case ThreadsGetByIdReq():
            convo = await _thread(s, caller, req.params.thread_id)
            items = await _items(s, convo, after=None, limit=DEFAULT_PAGE, order="asc")
            return _json(wire.thread_of(convo, items))
        case ThreadsListReq():
            return await _list(req, caller.user_id, s)
        case ItemsListReq():
            p = req.params
            convo = await _thread(s, caller, p.thread_id)
            limit = _limit(p.limit)
            return _json(await _items(s, convo, after=p.after, limit=limit, order=p.order))
        case ThreadsUpdateReq():
            title = req.params.title
            if len(title) > 500:
                raise ValidationFailed("params.title: at most 500 characters")
            convo = await _thread(s, caller, req.params.thread_id, "admin")
            convo = await s.store.update_conversation(convo.user_id, convo.id, {"title": title})
            return _json(wire.thread_of(convo))
        case ThreadsDeleteReq():
            convo = await _thread(s, caller, req.params.thread_id, "admin")
            await s.store.delete_conversation(convo.user_id, convo.id)
            return JSONResponse({})
        case ItemsFeedbackReq():
            await _thread(s, caller, req.params.thread_id)
            return JSONResponse({})
    raise ValidationFailed(f"{req.type} is not served by this ChatKit server")


async def _thread(
    s: Services, caller: Principal, thread_id: str, need: Role = "read"
) -> Conversation:
    """The thread the caller names (their own, or a project's: ``Store.reach``); the
    store's statements about it take the user it is kept under (``user_id``)."""
    return (await s.store.reach(caller, thread_id, need)).conversation


def _parse(raw: bytes) -> ChatKitReq:
    try:
        return REQUEST.validate_json(raw)
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()[:5]
        ]
        raise ValidationFailed("; ".join(problems) or "not a ChatKit request") from None


def _client_tools(metadata: dict[str, Any]) -> list[dict[str, Any]]:
    try:
        tools = Metadata.model_validate(metadata).client_tools
    except ValidationError as exc:
        where = ".".join(str(p) for p in exc.errors()[0]["loc"])
        raise ValidationFailed(f"metadata.{where}: {exc.errors()[0]['msg']}") from None
    return [tool.model_dump() for tool in tools]


def _limit(limit: int | None) -> int:
    if limit is None:
        return DEFAULT_PAGE
    if limit < 1:
        raise ValidationFailed("params.limit: must be at least 1")
    return min(limit, MAX_PAGE)


def _json(value: BaseModel) -> Response:
    return Response(wire.dump(value), media_type="application/json")


# streaming operations --------------------------------------------------------------------------


def _message(message: UserMessageInput, tools: list[dict[str, Any]]) -> TurnRequest:
    """The turn a user message asks for: its text (a quote before it), its model."""
    if message.attachments:
        raise ValidationFailed("params.input.attachments: attachments are not served here")
    text = "".join(c.text for c in message.content)
    if message.quoted_text:
        text = f"> {message.quoted_text}\n\n{text}"
    if not text.strip():
        raise ValidationFailed("params.input.content: the message is empty")
    return TurnRequest(content=text, model=message.inference_options.model, external_tools=tools)


def _user_item(turn: PreparedTurn, message: UserMessageInput) -> UserMessageItem:
    return UserMessageItem(
        id=turn.user_message_id or "",
        thread_id=turn.conversation_id,
        created_at=utcnow(),
        content=message.content,
        quoted_text=message.quoted_text,
        inference_options=message.inference_options,
    )


async def _create(
    req: ThreadsCreateReq, caller: Principal, s: Services, tools: list[dict[str, Any]]
) -> Response:
    turn_request = _message(req.params.input, tools)
    s.engine.check(turn_request)  # before the thread is written
    if turn_request.model:
        s.providers.resolve(turn_request.model)
    convo = await s.store.create_conversation(caller.user_id, metadata={"source": "chatkit"})
    turn = await s.runs.start(caller, convo.id, turn_request)
    preamble: list[ThreadStreamEvent] = [
        ThreadCreatedEvent(thread=wire.thread_of(convo)),
        ThreadItemDoneEvent(item=_user_item(turn, req.params.input)),
    ]
    return _stream(s, turn, tools, preamble)


async def _add_message(
    req: ThreadsAddUserMessageReq, caller: Principal, s: Services, tools: list[dict[str, Any]]
) -> Response:
    convo = await _thread(s, caller, req.params.thread_id, "write")
    turn = await s.runs.start(caller, convo.id, _message(req.params.input, tools))
    preamble: list[ThreadStreamEvent] = [
        ThreadItemDoneEvent(item=_user_item(turn, req.params.input))
    ]
    return _stream(s, turn, tools, preamble)


async def _tool_output(
    req: ThreadsAddClientToolOutputReq,
    caller: Principal,
    s: Services,
    tools: list[dict[str, Any]],
) -> Response:
    """The app ran the pending client tool call of the thread's last reply: its result is
    recorded there and the model goes on in a new reply."""
    convo = await _thread(s, caller, req.params.thread_id, "write")
    user = convo.user_id
    leaf = await s.store.get_message(user, convo.id, convo.active_leaf_id or "")
    parts = [p.copy() for p in leaf.parts]
    waiting = [
        p for p in parts if p["type"] == "dynamic-tool" and p.get("state") == "input-available"
    ]
    if leaf.role != "assistant" or leaf.status == "streaming" or not waiting:
        raise Conflict("no client tool call of this thread waits for its output")
    waiting[-1].update({"state": "output-available", "output": req.params.result})
    await s.store.checkpoint(user, leaf.id, parts)
    request = TurnRequest(mode="continue", external_tools=tools)
    turn = await s.runs.start(caller, convo.id, request)
    return _stream(s, turn, tools)


async def _retry(
    req: ThreadsRetryAfterItemReq, caller: Principal, s: Services, tools: list[dict[str, Any]]
) -> Response:
    convo = await _thread(s, caller, req.params.thread_id, "write")
    user = convo.user_id
    asked = await s.store.get_message(user, convo.id, req.params.item_id)
    if asked.role != "user":
        raise ValidationFailed("params.item_id: not a user message")
    replies = [m for m in await s.store.children(user, convo.id, asked.id) if m.role == "assistant"]
    if not replies:
        raise ValidationFailed("params.item_id: this message has no reply to retry")
    turn_request = TurnRequest(mode="regenerate", target_id=replies[-1].id, external_tools=tools)
    turn = await s.runs.start(caller, convo.id, turn_request)
    return _stream(s, turn, tools)


async def _custom_action(
    req: ThreadsCustomActionReq, caller: Principal, s: Services, tools: list[dict[str, Any]]
) -> Response:
    """``parley.approval`` (an approval widget's buttons): answer it, stream the rest."""
    action = req.params.action
    if action.type != wire.APPROVAL_ACTION:
        raise ValidationFailed(f"params.action.type: unknown action {action.type!r}")
    try:
        answer = Approval.model_validate(action.payload)
    except ValidationError:
        raise ValidationFailed("params.action.payload: {tool_call_id, approved}") from None
    convo = await _thread(s, caller, req.params.thread_id, "write")
    user = convo.user_id
    pending = await s.store.pending_in_conversation(user, convo.id)
    found = next(
        (p for p in pending if p.kind == "approval" and p.tool_call_id == answer.tool_call_id),
        None,
    )
    if found is None:
        raise Conflict("this tool call was already answered, or is not in this thread")
    run = await s.store.get_run(user, found.run_id)
    message = await s.store.get_message(user, convo.id, run.message_id)
    await s.runs.answer_approval(
        caller, run.id, answer.tool_call_id, approved=answer.approved, reason=None
    )
    if (await s.store.get_run(user, run.id)).status == "awaiting":
        events = doors.nothing()  # other approvals of the same step still wait
    else:
        events = doors.until_suspended(
            doors.continuation(
                s.runs.events(caller, run.id),
                lambda e: isinstance(e, ev.RunSuspended) and answer.tool_call_id in e.waiting_for,
            )
        )
    encoder = wire.ChatKitStream(
        thread_id=convo.id,
        message_id=run.message_id,
        preamble=[_options()],
        parts=message.parts,
        client_tools=frozenset(t["name"] for t in tools),
    )
    return _respond(s, encoder, events, run.id)


def _options() -> StreamOptionsEvent:
    return StreamOptionsEvent(stream_options=StreamOptions(allow_cancel=False))


def _stream(
    s: Services,
    turn: PreparedTurn,
    tools: list[dict[str, Any]],
    preamble: Sequence[ThreadStreamEvent] = (),
) -> Response:
    encoder = wire.ChatKitStream(
        thread_id=turn.conversation_id,
        message_id=turn.message_id,
        preamble=[*preamble, _options()],
        client_tools=frozenset(t["name"] for t in tools),
    )
    events = doors.until_suspended(s.runs.turn_events(turn))
    return _respond(s, encoder, events, turn.run_id)


def _respond(
    s: Services, encoder: wire.ChatKitStream, events: doors.Events, run_id: str
) -> Response:
    response = sse_response(encoder, events, ping=0)  # only data: lines (protocols.md 4.7)
    response.headers["X-Run-Id"] = run_id
    return response


# pages ---------------------------------------------------------------------------------------


async def _list(req: ThreadsListReq, user: str, s: Services) -> Response:
    p = req.params
    convos, cursor = await s.store.list_conversations(
        user, limit=_limit(p.limit), cursor=p.after, oldest_first=p.order == "asc"
    )
    threads = [wire.thread_of(c) for c in convos]
    return _json(Page[Thread](data=threads, has_more=cursor is not None, after=cursor))


async def _items(
    s: Services, convo: Conversation, *, after: str | None, limit: int, order: str
) -> Page[ThreadItem]:
    """A page of the active branch's items. Newest first, a page reads about ``limit``
    messages; oldest first reads the branch (one statement)."""
    user = convo.user_id
    if order == "asc":
        branch = await s.store.branch(user, convo.id, leaf_id=convo.active_leaf_id)
        items = [item for m in branch for item in wire.items_of(m)]
        if after is not None:
            ids = [item.id for item in items]
            if after not in ids:
                raise ValidationFailed("params.after: not an item of this thread")
            items = items[ids.index(after) + 1 :]
        more = False
    else:
        items, more = await _newest_first(s, user, convo, after, limit)
    page = items[:limit]
    has_more = more or len(items) > limit
    return Page[ThreadItem](
        data=page, has_more=has_more, after=page[-1].id if has_more and page else None
    )


async def _newest_first(
    s: Services, user: str, convo: Conversation, after: str | None, limit: int
) -> tuple[list[ThreadItem], bool]:
    first: list[ThreadItem] = []
    before = None
    if after is not None:
        before = wire.message_of(after)
        holding = wire.items_of(await s.store.get_message(user, convo.id, before))
        ids = [item.id for item in holding]
        if after not in ids:
            raise ValidationFailed("params.after: not an item of this thread")
        first = holding[: ids.index(after)][::-1]
    messages, more = await s.store.messages_before(
        user, convo.id, before=before, limit=limit, convo=convo
    )
    rest = [item for m in reversed(messages) for item in reversed(wire.items_of(m))]
    return first + rest, more
