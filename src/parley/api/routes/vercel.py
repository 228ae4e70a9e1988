"""The Vercel AI SDK door (``POST /api/chat``) and the chat playground (``POST /mcp/chat-v2``).

Both take the ``useChat`` / ``DefaultChatTransport`` body ``{id, messages, trigger, messageId}``
(plus ``provider``, ``model``, ``temperature``, ``selectedServers``) and answer the UI message
stream (:mod:`parley.protocols.vercel_ui`; send ``X-Parley-AI-SDK: 6`` from a v6 client for
native tool approvals). The chat ``id`` names a conversation of the caller (``external_id``),
created on first use. parley's stored history is the truth: from the client's messages it takes
only what is new, by ``trigger``:

- ``submit-message`` whose last message is a user message: a new message (its text and file
  parts); with ``messageId`` it is an edit of that user message (a new branch);
- ``submit-message`` whose last message is an assistant message: the client answers tool
  approvals, as v6 tool parts in state ``approval-responded`` or, from v5 clients, in the body
  field ``toolApprovals: [{id, approved, reason?}]`` (``id`` is the approval id of the
  ``data-tool-approval`` part); the run continues, in the same assistant message;
- ``regenerate-message``: a new reply to the last user message of the active branch.

``GET /api/chat/{id}/stream`` replays the active run from its start (204 when there is none);
a run that went on after an approval timed out (the asking stream ended at the approval) is
told once, from that approval's denial to the run's end.
The playground also takes ``sessionId`` (a conversation id or the client's own id, echoed in the
response header ``x-chat-session-id``; parley's conversation id when none is sent) and
``elicitationResponse: {requestId, action, payload?}``, which answers a server's question and
streams the rest of the reply. With ``ENABLE_CHAT_V2_APPROVALS=true`` every tool call there
waits for approval. A body that does not fit the schema is a 400 there.

The playground also serves ai@4 clients, recognised by their body: ai@4's ``useChat`` sends
messages with ``content`` text (files in ``experimental_attachments``) and no ``trigger``. They
get the Data Stream protocol (:mod:`parley.protocols.vercel_data_stream`), and resume with
``GET /mcp/chat-v2?chatId=`` (an empty stream when there is nothing to resume). ai@4 re-sends
the whole chat: ``reload()`` re-sends a stored user message (its reply is regenerated), and
``maxSteps`` re-posts a reply whose last step has tool results: results for calls waiting for
approval answer them (``addToolResult``, "Yes…" approves), and a reply parley's step limit
stopped goes on as a new reply.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from parley.api import doors
from parley.api.deps import CurrentCaller, Services, ServicesDep
from parley.api.errors import DoorRoute, parley_error_response
from parley.api.openapi import (
    AI4_RESUME_RESPONSES,
    PLAYGROUND_RESPONSES,
    RESUME_RESPONSES,
    STREAM_RESPONSES,
)
from parley.api.routes import vercel_history as history
from parley.api.routes.vercel_replies import (
    DATA_STREAM,
    UI_STREAM,
    Reply,
    asked,
    resume_stream,
    stream,
)
from parley.api.schemas import ClientApprovalAnswer, ClientFile, ClientText, client_parts
from parley.auth import Principal
from parley.chat import events as ev
from parley.chat.files import file_part
from parley.chat.messages import Part
from parley.engine.requests import TurnRequest
from parley.errors import Conflict, ParleyError, ValidationFailed
from parley.store.values import Conversation


class PlaygroundRoute(DoorRoute):
    """The contract's error shape; a body that does not fit the schema is a 400 (its spec)."""

    validation_status = 400

    @staticmethod
    def render(exc: ParleyError) -> Response:
        return parley_error_response(exc)


router = APIRouter(tags=["vercel"])
playground = APIRouter(tags=["playground"], route_class=PlaygroundRoute)


class UIMessage(BaseModel):
    """A v5+ ``UIMessage``, or ai@4's ``Message``: its text in ``content``, its files in
    ``experimental_attachments`` (``{url, contentType?, name?}``)."""

    model_config = ConfigDict(extra="allow")

    id: str = Field(default="", max_length=255)
    role: Literal["system", "user", "assistant"]
    parts: list[dict[str, Any]] = Field(default_factory=list)
    content: str | None = None
    experimental_attachments: list[dict[str, Any]] | None = None
    toolInvocations: list[dict[str, Any]] | None = None


class ApprovalResponse(BaseModel):
    id: str = Field(max_length=64)
    approved: bool
    reason: str | None = Field(default=None, max_length=2_000)
    toolCallId: str | None = Field(default=None, max_length=255)


class ChatRequest(BaseModel):
    """A ``DefaultChatTransport`` body; other fields of the app's ``body`` option are ignored."""

    model_config = ConfigDict(extra="allow")

    id: str | None = Field(default=None, min_length=1, max_length=255)
    messages: list[UIMessage] = Field(default_factory=list, max_length=100_000)
    trigger: Literal["submit-message", "regenerate-message"] = "submit-message"
    messageId: str | None = Field(default=None, max_length=255)
    provider: str | None = Field(default=None, max_length=100)
    model: str | None = Field(default=None, max_length=255)
    temperature: float | None = Field(default=None, ge=0, le=2)
    selectedServers: list[str] | None = None
    toolApprovals: list[ApprovalResponse] = Field(default_factory=list)


class ElicitationResponse(BaseModel):
    requestId: str = Field(max_length=64)
    action: Literal["accept", "decline", "cancel"]
    payload: dict[str, Any] | None = None


class PlaygroundRequest(ChatRequest):
    sessionId: str | None = Field(default=None, max_length=255)
    elicitationResponse: ElicitationResponse | None = None


def _from_ai4(body: ChatRequest) -> bool:
    """Whether ai@4's ``useChat`` sent the body: its messages hold ``content`` text, which no
    v5+ ``UIMessage`` has, and it names no ``trigger``, which every v5+ transport sends."""
    sent_trigger = "trigger" in body.model_fields_set
    return not sent_trigger and any(m.content is not None for m in body.messages)


# the doors ---------------------------------------------------------------------------------


@router.post("/api/chat", response_model=None, responses=STREAM_RESPONSES)
async def chat(
    body: ChatRequest, request: Request, caller: CurrentCaller, s: ServicesDep
) -> Response:
    if body.id is None:
        raise ValidationFailed("id (the chat id) is required", status=422)
    _check_new_message(body, s)
    convo = await doors.conversation_for(s, caller, body.id, source="vercel")
    return await respond(body, request, caller, s, convo)


@router.get("/api/chat/{chat_id}/stream", response_model=None, responses=RESUME_RESPONSES)
async def resume(chat_id: str, request: Request, caller: CurrentCaller, s: ServicesDep) -> Response:
    return await resume_stream(chat_id, request, caller, s)


@playground.post("/mcp/chat-v2", response_model=None, responses=PLAYGROUND_RESPONSES)
async def chat_v2(
    body: PlaygroundRequest, request: Request, caller: CurrentCaller, s: ServicesDep
) -> Response:
    _check_new_message(body, s)
    key = body.sessionId or body.id
    convo = await doors.conversation_for(s, caller, key, source="playground")
    reply = Reply(data_stream=_from_ai4(body), session_id=body.sessionId)
    if body.elicitationResponse is not None:
        answer = body.elicitationResponse
        return await _answer_elicitation(answer, request, caller, s, convo, reply)
    return await respond(
        body, request, caller, s, convo, reply, approve_all=s.settings.enable_chat_v2_approvals
    )


@playground.get("/mcp/chat-v2/{chat_id}/stream", response_model=None, responses=RESUME_RESPONSES)
async def resume_v2(
    chat_id: str, request: Request, caller: CurrentCaller, s: ServicesDep
) -> Response:
    return await resume_stream(chat_id, request, caller, s)


@playground.get("/mcp/chat-v2", response_model=None, responses=AI4_RESUME_RESPONSES)
async def resume_ai4(
    chat_id: Annotated[str, Query(alias="chatId", min_length=1, max_length=255)],
    request: Request,
    caller: CurrentCaller,
    s: ServicesDep,
) -> Response:
    """ai@4's ``experimental_resume``: the active run in the Data Stream protocol."""
    return await resume_stream(chat_id, request, caller, s, DATA_STREAM)


# one request -------------------------------------------------------------------------------


async def respond(
    body: ChatRequest,
    request: Request,
    caller: Principal,
    s: Services,
    convo: Conversation,
    reply: Reply = UI_STREAM,
    *,
    approve_all: bool = False,
) -> Response:
    """One request's turn; the store's statements take the user the chat is kept under."""
    if not body.messages:
        raise ValidationFailed("messages is empty")
    user = convo.user_id
    if body.trigger == "submit-message" and body.messages[-1].role == "assistant":
        pending = await s.store.pending_in_conversation(user, convo.id)
        answers = _approval_answers(body, {p.tool_call_id for p in pending})
        if answers:
            return await _continue_after_approvals(answers, request, caller, s, convo, reply)
        if not await _ends_in_tool_results(body, user, s, convo):
            raise ValidationFailed("nothing to continue: no tool approval was answered")
        turn_request = _options(body, approve_all, mode="continue")
    else:
        turn_request = await _turn_request(body, user, s, convo, approve_all)
    turn = await s.runs.start(caller, convo.id, turn_request)
    events = doors.until_suspended(s.runs.turn_events(turn))
    return stream(request, s, events, turn.message_id, turn.run_id, convo.id, reply)


def _options(body: ChatRequest, approve_all: bool, **fields: Any) -> TurnRequest:
    return TurnRequest(
        model=body.model,
        provider=body.provider,
        temperature=body.temperature,
        servers=body.selectedServers,
        approve_all=approve_all,
        **fields,
    )


async def _turn_request(
    body: ChatRequest, user: str, s: Services, convo: Conversation, approve_all: bool
) -> TurnRequest:
    if body.trigger == "regenerate-message":
        target = await history.last_assistant(user, s, convo)
        return _options(body, approve_all, mode="regenerate", target_id=target)
    content, parts = _user_message(body)
    if body.messageId is not None:
        target = await _edited(body, user, s, convo)
        return _options(
            body, approve_all, mode="edit", target_id=target, content=content, parts=parts
        )
    if _from_ai4(body):
        return await _ai4_turn(body, user, s, convo, approve_all, content, parts)
    return _options(body, approve_all, content=content, parts=parts)


async def _ai4_turn(
    body: ChatRequest,
    user: str,
    s: Services,
    convo: Conversation,
    approve_all: bool,
    content: str | None,
    parts: list[Part],
) -> TurnRequest:
    """ai@4 sends the whole chat, its questions without parley's ids, and says nothing of why:
    its ``k``-th user message is new when parley holds fewer; else ``reload()`` re-sent it (the
    same text: its reply is regenerated) or the app cut the chat there and sent another (an
    edit). ``k`` counts from where the chat meets the branch (:mod:`.vercel_history`)."""
    leaf = await history.active_leaf(user, s, convo)
    start, after = await history.after_anchor(user, s, convo, leaf, body.messages[:-1])
    stored = [i for i, (_, role) in enumerate(after) if role == "user"]
    k = sum(1 for m in body.messages[start:] if m.role == "user")
    if k > len(stored):
        return _options(body, approve_all, content=content, parts=parts)
    at = stored[k - 1]
    target = after[at][0]
    following, role = after[at + 1] if at + 1 < len(after) else ("", "")
    if role == "assistant" and await history.text_of(user, s, convo, target) == content:
        return _options(body, approve_all, mode="regenerate", target_id=following)
    return _options(body, approve_all, mode="edit", target_id=target, content=content, parts=parts)


def _check_new_message(body: ChatRequest, s: Services) -> None:
    """The client's new user message, if it sends one, held to the limits of every door
    before its chat is created."""
    last = body.messages[-1] if body.messages else None
    if body.trigger == "submit-message" and last is not None and last.role == "user":
        content, parts = _user_message(body)
        s.engine.check(TurnRequest(content=content, parts=parts))


def _user_message(body: ChatRequest) -> tuple[str | None, list[Part]]:
    """The text and file parts of the client's newest user message (the last in ``messages``)."""
    index = len(body.messages) - 1
    message = body.messages[index]
    files: list[Part]
    if message.content is not None:
        text, files = message.content, _ai4_files(message, f"messages[{index}]")
    else:
        parts = client_parts(message.parts, f"messages[{index}].parts")
        text = "\n".join(p.text for _, p in parts if isinstance(p, ClientText))
        files = [p.to_part(where) for where, p in parts if isinstance(p, ClientFile)]
    if not text.strip() and not files:
        raise ValidationFailed("the message is empty")
    return text or None, files


def _ai4_files(message: UIMessage, field: str) -> list[Part]:
    """An ai@4 message's ``experimental_attachments`` as file parts."""
    return [
        file_part(
            url=a.get("url"),
            media_type=a.get("contentType") or "application/octet-stream",
            filename=a.get("name"),
            field=f"{field}.experimental_attachments[{j}]",
        )
        for j, a in enumerate(message.experimental_attachments or [])
    ]


async def _edited(body: ChatRequest, user: str, s: Services, convo: Conversation) -> str:
    """parley's id of the user message the client edits: the same id, or the same position
    (counted from where the chat meets the branch: :mod:`.vercel_history`)."""
    leaf, edited = await history.active_leaf(user, s, convo), str(body.messageId)
    if await history.on_branch(user, s, convo, leaf, edited):
        return edited
    visible = [m for m in body.messages if m.role != "system"]
    index = next((i for i, m in enumerate(visible) if m.id == edited), len(visible) - 1)
    start, after = await history.after_anchor(user, s, convo, leaf, visible[:index])
    shown = [(ident, role) for ident, role in after if role in ("user", "assistant")]
    at = index - start
    if at < len(shown) and shown[at][1] == "user":
        return shown[at][0]
    raise ValidationFailed("the edited message is not in this chat's history")


# approvals and elicitations ----------------------------------------------------------------


def _approval_answers(body: ChatRequest, waiting: set[str | None]) -> list[ApprovalResponse]:
    """The client's answers to tool approvals: ``toolApprovals``, v6 tool parts in state
    ``approval-responded``, and ai@4 tool results for calls that wait for approval (the
    ``addToolResult`` of ai@4's human-in-the-loop pattern)."""
    answers = list(body.toolApprovals)
    last = body.messages[-1] if body.messages else None
    if last is None or last.role != "assistant":
        return answers
    for _, part in client_parts(last.parts, f"messages[{len(body.messages) - 1}].parts"):
        if isinstance(part, ClientApprovalAnswer):
            answer = part.approval
            answers.append(
                ApprovalResponse(
                    id=answer.id,
                    approved=answer.approved,
                    reason=answer.reason,
                    toolCallId=part.toolCallId,
                )
            )
    for invocation in last.toolInvocations or []:
        call = invocation.get("toolCallId")
        if invocation.get("state") == "result" and call in waiting:
            answers.append(_ai4_answer(str(call), invocation.get("result")))
    return answers


def _ai4_answer(tool_call_id: str, result: Any) -> ApprovalResponse:
    """An ai@4 tool result as an approval: ``true``, ``{approved: true}`` or text that starts
    with "yes" (ai@4's example answers "Yes, confirmed." or "No, denied.") approve; anything
    else denies, the text as the reason."""
    if isinstance(result, dict):
        approved = result.get("approved") is True
    else:
        approved = result is True or str(result).strip().lower().startswith("yes")
    reason = result[:2_000] if isinstance(result, str) and not approved else None
    return ApprovalResponse(id="", approved=approved, reason=reason, toolCallId=tool_call_id)


async def _ends_in_tool_results(
    body: ChatRequest, user: str, s: Services, convo: Conversation
) -> bool:
    """Whether an ai@4 client re-posts a reply that stopped after its tools' results (parley's
    step limit), as ``useChat`` does with ``maxSteps``: the model may go on from them."""
    invocations = body.messages[-1].toolInvocations or []
    if not _from_ai4(body) or not invocations:
        return False
    if not all(i.get("state") == "result" for i in invocations):
        return False
    if await s.store.active_run(user, convo.id) is not None:
        return False
    reply = await history.leaf_message(user, s, convo)
    if reply is None or reply.role != "assistant":
        return False
    step = _last_step(reply.parts)
    return bool(step) and all(p.get("type") == "dynamic-tool" for p in step)


def _last_step(parts: list[Part]) -> list[Part]:
    """The parts after the last ``step-start``, notices aside."""
    starts = [i for i, p in enumerate(parts) if p.get("type") == "step-start"]
    after = parts[starts[-1] + 1 :] if starts else parts
    return [p for p in after if not str(p.get("type", "")).startswith("data-")]


async def _continue_after_approvals(
    answers: list[ApprovalResponse],
    request: Request,
    caller: Principal,
    s: Services,
    convo: Conversation,
    reply: Reply,
) -> Response:
    user = convo.user_id
    pending = await s.store.pending_in_conversation(user, convo.id)
    by_id = {p.id: p for p in pending if p.kind == "approval"}
    by_call = {p.tool_call_id: p for p in pending if p.kind == "approval"}
    answered: dict[str, dict[str, Any]] = {}
    run_id: str | None = None
    for answer in answers:
        found = by_id.get(answer.id) or by_call.get(answer.toolCallId)
        if found is None or found.tool_call_id is None:
            continue
        await s.runs.answer_approval(
            caller, found.run_id, found.tool_call_id, approved=answer.approved, reason=answer.reason
        )
        answered[found.tool_call_id] = asked(found)
        run_id = found.run_id
    if run_id is None:
        raise Conflict("these tool approvals were already answered, or are not in this chat")
    run = await s.store.get_run(user, run_id)
    if run.status == "awaiting":
        events = doors.nothing()
    else:
        events = doors.until_suspended(
            doors.continuation(
                s.runs.events(caller, run_id),
                lambda e: (
                    isinstance(e, ev.RunSuspended) and bool(set(answered) & set(e.waiting_for))
                ),
            )
        )
    approvals = list(answered.values())
    return stream(request, s, events, run.message_id, run_id, convo.id, reply, approvals)


async def _answer_elicitation(
    answer: ElicitationResponse,
    request: Request,
    caller: Principal,
    s: Services,
    convo: Conversation,
    reply: Reply,
) -> Response:
    user = convo.user_id
    pending = await s.store.pending_in_conversation(user, convo.id)
    found = next((p for p in pending if p.id == answer.requestId), None)
    if found is None or found.kind != "elicitation":
        raise Conflict("this question was already answered, or is not in this chat")
    await s.runs.answer_elicitation(
        caller, found.run_id, found.id, action=answer.action, content=answer.payload
    )
    run = await s.store.get_run(user, found.run_id)
    events = doors.until_suspended(
        doors.continuation(
            s.runs.events(caller, run.id),
            lambda e: isinstance(e, ev.ElicitationRequested) and e.elicitation_id == found.id,
        )
    )
    return stream(request, s, events, run.message_id, run.id, convo.id, reply)
