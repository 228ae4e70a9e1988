"""The AG-UI door: ``POST /ag-ui`` takes a ``RunAgentInput`` and streams AG-UI events
(:mod:`parley.protocols.ag_ui`), for ``@ag-ui/client``'s ``HttpAgent`` and CopilotKit.

``threadId`` names a conversation of the caller (its id, or the client's own id kept as
``external_id``), created on first use and never another user's; ``runId`` is echoed in
``RUN_STARTED`` and ``RUN_FINISHED`` (parley's run id is in the ``X-Run-Id`` header and in
``RUN_STARTED.metadata.parley``). parley's stored history is the truth: a new thread is seeded
with the client's ``messages``; after that parley takes from them only what is new:

- a last message from the user: a new user message (text, and media parts with a ``data`` or
  ``url`` source);
- last messages from tools: the results of the client's own tools (below); the reply goes on
  from them;
- ``resume`` entries: answers to the run's interrupts (below).

Frontend tools. The ``tools`` of the input are offered to the model beside parley's own (a
parley tool of the same name wins). When the model calls one, the run ends with the call's
``TOOL_CALL_START/ARGS/END`` and ``RUN_FINISHED`` (``outcome.pendingToolCallIds`` names it);
the client runs it and sends its next input with the result as a ``tool`` message
(``toolCallId``), and the reply continues in the same conversation.

Human in the loop. A tool call that needs approval ends the run with ``RUN_FINISHED`` whose
``outcome`` is ``{"type": "interrupt", "interrupts": [...]}``: one interrupt a call, ``id`` the
approval id, ``reason: "tool_approval"``, ``toolCallId``, ``message``, ``responseSchema``
``{approved: boolean, reason?: string}`` and ``expiresAt``. The client answers with a new input
on the same thread whose ``resume`` holds ``{interruptId, status: "resolved", payload:
{"approved": true|false, "reason"?}}`` (``status: "cancelled"`` denies); the run continues and
streams the rest of the reply (the tool's result, the model's answer). ``HttpAgent`` does this
with ``runAgent({resume: [...]})``; an interrupt left unanswered is told again at once. The
native ``POST /api/runs/{run_id}/approvals/{tool_call_id}`` answers them too.

Errors before the stream (a bad token, a body that is not a ``RunAgentInput``, a message over
the limits every door shares, an unknown thread on resume) are the contract's
``{"success": false, "error": {code, message}}`` with their HTTP status; ``HttpAgent`` rejects
with ``HTTP <status>: <body>``. A run that fails streams ``RUN_ERROR {message, code}``.
parley keeps no agent state: ``state``, ``context`` and ``forwardedProps`` are ignored.
"""

from __future__ import annotations

import re
from typing import Any

from ag_ui.core import (
    AssistantMessage,
    DeveloperMessage,
    Interrupt,
    Message,
    ResumeEntry,
    RunAgentInput,
    SystemMessage,
    TextPart,
    ToolMessage,
    UserMessage,
)
from fastapi import APIRouter
from starlette.responses import Response

from parley.api import doors
from parley.api.deps import CurrentCaller, Services, ServicesDep
from parley.api.openapi import STREAM_RESPONSES
from parley.api.streaming import sse_response
from parley.auth import Principal
from parley.chat import events as ev
from parley.engine.requests import TurnRequest
from parley.errors import Conflict, NotFound, ValidationFailed
from parley.protocols.ag_ui import AGUIStream, approval_interrupt, snapshot
from parley.protocols.openai_chat import ClientHistory, client_history
from parley.store.values import ApprovalAsk, Conversation, PendingInput

router = APIRouter(tags=["ag-ui"])

MAX_ID = 255
MAX_TOOLS = 512
TOOL_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,64}")


@router.post("/ag-ui", response_model=None, responses=STREAM_RESPONSES)
async def run_agent(body: RunAgentInput, caller: CurrentCaller, s: ServicesDep) -> Response:
    _check_ids(body)
    if body.resume:
        return await _resume(body, caller, s)
    history = client_history(_as_openai(body.messages))
    request = TurnRequest(
        mode="send" if history.user_parts is not None else "continue",
        parts=history.user_parts or [],
        external_tools=_frontend_tools(body),
    )
    earlier = [parts for role, parts in history.messages if role == "user"]
    s.engine.check(request, earlier=earlier)  # before the thread is created or seeded
    convo = await doors.conversation_for(
        s, caller, body.thread_id, source="ag-ui", system=history.system
    )
    await _record_history(convo.user_id, s, convo, history)
    turn = await s.runs.start(caller, convo.id, request)
    branch = await s.store.branch(convo.user_id, convo.id, leaf_id=turn.message_id)
    encoder = AGUIStream(
        thread_id=body.thread_id,
        run_id=body.run_id,
        parley_run_id=turn.run_id,
        conversation_id=convo.id,
        message_id=turn.message_id,
        snapshot=snapshot(branch[:-1]),
    )
    events = doors.until_suspended(s.runs.turn_events(turn))
    return sse_response(encoder, events, ping=s.settings.heartbeat_interval)


def _check_ids(body: RunAgentInput) -> None:
    for name, value in (("threadId", body.thread_id), ("runId", body.run_id)):
        if not 0 < len(value) <= MAX_ID:
            raise ValidationFailed(f"{name} must be 1 to {MAX_ID} characters", status=422)


# the client's messages ---------------------------------------------------------------------


def _as_openai(messages: list[Message]) -> list[dict[str, Any]]:
    """AG-UI messages in the OpenAI shape :func:`client_history` reads (the two are close);
    activity and reasoning messages are the client's own and left out."""
    out: list[dict[str, Any]] = []
    for index, message in enumerate(messages):
        match message:
            case UserMessage():
                out.append({"role": "user", "content": _user_content(message.content, index)})
            case AssistantMessage():
                calls = [
                    {"id": c.id, "type": "function", "function": c.function.model_dump()}
                    for c in message.tool_calls or []
                ]
                out.append({"role": "assistant", "content": message.content, "tool_calls": calls})
            case ToolMessage():
                content = _text_of(message.content)
                out.append(
                    {"role": "tool", "tool_call_id": message.tool_call_id, "content": content}
                )
            case SystemMessage() | DeveloperMessage():
                out.append({"role": "system", "content": message.content})
    return out


def _user_content(content: str | list[Any], index: int) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    parts: list[dict[str, Any]] = []
    for position, part in enumerate(content):
        if isinstance(part, TextPart):
            parts.append({"type": "text", "text": part.text})
            continue
        source = part.source
        if source.type == "file":
            where = f"messages[{index}].content[{position}].source"
            raise ValidationFailed(f"{where}: a provider's file handle is not supported")
        url = source.value
        if source.type == "data":
            url = f"data:{source.mime_type};base64,{source.value}"
        parts.append({"type": "image_url", "image_url": {"url": url}})
    return parts


def _text_of(content: str | list[Any]) -> str:
    if isinstance(content, str):
        return content
    return "".join(p.text for p in content if isinstance(p, TextPart))


def _frontend_tools(body: RunAgentInput) -> list[dict[str, Any]]:
    tools = body.tools or []
    if len(tools) > MAX_TOOLS:
        raise ValidationFailed(f"at most {MAX_TOOLS} tools", status=422)
    specs = []
    for index, tool in enumerate(tools):
        if not TOOL_NAME.fullmatch(tool.name):
            raise ValidationFailed(
                f"tools[{index}].name must be 1 to 64 letters, digits, '_', '.' or '-'", status=422
            )
        parameters = tool.parameters if tool.parameters is not None else {"type": "object"}
        if not isinstance(parameters, dict):
            raise ValidationFailed(f"tools[{index}].parameters must be a JSON schema object")
        specs.append(
            {"name": tool.name, "description": tool.description[:10_000], "parameters": parameters}
        )
    return specs


async def _record_history(
    user: str, s: Services, convo: Conversation, history: ClientHistory
) -> None:
    """A new thread takes the client's history; a known one only the results of its client's
    tools (a new user message is the turn's own)."""
    if convo.active_leaf_id is None:
        parent: str | None = None
        for role, parts in history.messages:
            stored = await s.store.add_message(
                user, convo.id, role=role, parts=parts, parent_id=parent
            )
            parent = stored.id
    elif history.user_parts is None:
        await doors.record_tool_outputs(
            s,
            user,
            convo.id,
            convo.active_leaf_id or "",
            history.tool_outputs,
            refusal="the last message must be a user message, or tool messages answering the "
            "tool calls of this thread's last reply",
        )


# interrupts --------------------------------------------------------------------------------


async def _resume(body: RunAgentInput, caller: Principal, s: Services) -> Response:
    """Answer the run's approvals with the input's ``resume`` entries, then stream the rest."""
    convo = await doors.find_conversation(s, caller, body.thread_id, "write")
    if convo is None:
        raise NotFound("no such thread")
    user = convo.user_id
    pending = await s.store.pending_in_conversation(user, convo.id)
    approvals = {p.id: p for p in pending if p.kind == "approval"}
    approvals.update(
        {p.tool_call_id: p for p in pending if p.kind == "approval" and p.tool_call_id}
    )
    answered: set[str] = set()
    run_id: str | None = None
    for entry in body.resume or []:
        found = approvals.get(entry.interrupt_id)
        if found is None or found.tool_call_id is None:
            continue
        approved, reason = _verdict(entry)
        await s.runs.answer_approval(
            caller, found.run_id, found.tool_call_id, approved=approved, reason=reason
        )
        answered.add(found.tool_call_id)
        run_id = found.run_id
    if run_id is None:
        raise Conflict("these interrupts were already answered, or are not in this thread")
    run = await s.store.get_run(user, run_id)
    still_open: list[Interrupt] = []
    if run.status == "awaiting":
        events = doors.nothing()
        still_open = [
            _interrupt(p)
            for p in await s.store.pending_for_run(user, run_id)
            if p.kind == "approval" and p.status == "pending"
        ]
    else:
        events = doors.until_suspended(
            doors.continuation(
                s.runs.events(caller, run_id),
                lambda e: isinstance(e, ev.RunSuspended) and bool(answered & set(e.waiting_for)),
            )
        )
    encoder = AGUIStream(
        thread_id=body.thread_id,
        run_id=body.run_id,
        parley_run_id=run_id,
        conversation_id=convo.id,
        message_id=run.message_id,
        interrupts=still_open,
    )
    return sse_response(encoder, events, ping=s.settings.heartbeat_interval)


def _verdict(entry: ResumeEntry) -> tuple[bool, str | None]:
    """``resolved`` with ``payload.approved: true`` (or ``payload: true``) approves; anything
    else denies, ``payload.reason`` as the reason."""
    payload = entry.payload
    if entry.status != "resolved":
        return False, "cancelled"
    if isinstance(payload, dict):
        reason = payload.get("reason")
        return payload.get("approved") is True, reason[:2_000] if isinstance(reason, str) else None
    return payload is True, None


def _interrupt(pending: PendingInput) -> Interrupt:
    ask = pending.payload
    return approval_interrupt(
        approval_id=pending.id,
        tool_call_id=pending.tool_call_id or "",
        tool_name=ask.tool_name if isinstance(ask, ApprovalAsk) else "",
        args=dict(ask.args) if isinstance(ask, ApprovalAsk) else {},
        expires_at=pending.expires_at.isoformat(),
    )
