"""How the Vercel doors write a response (the ai@4 Data Stream protocol or the UI message
stream) and what a resume sends: the active run, or what a run did after an approval timed
out that no response carried."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from starlette.responses import Response

from parley.api import doors
from parley.api.deps import Services
from parley.api.streaming import sse_response
from parley.auth import Principal
from parley.chat import events as ev
from parley.protocols.vercel_data_stream import VercelDataStream
from parley.protocols.vercel_ui import HINT_HEADER, Features, VercelUIStream, approval_data
from parley.store.values import ApprovalAsk, PendingInput, Run, RunState


@dataclass(frozen=True)
class Reply:
    """How a response is written: the ai@4 Data Stream protocol or the UI message stream, and
    the session its ``X-Chat-Session-Id`` header names (the conversation's id when None)."""

    data_stream: bool = False
    session_id: str | None = None


UI_STREAM = Reply()
DATA_STREAM = Reply(data_stream=True)


def stream(
    request: Request,
    s: Services,
    events: doors.Events,
    message_id: str,
    run_id: str,
    conversation_id: str,
    reply: Reply,
    approvals: list[dict[str, Any]] | None = None,
) -> Response:
    session_id = reply.session_id or conversation_id
    if reply.data_stream:
        data_stream = VercelDataStream(
            message_id=message_id, run_id=run_id, session_id=session_id, approvals=approvals
        )
        return sse_response(data_stream, events, ping=0)  # a ": ping" line is no part of it
    encoder = VercelUIStream(
        message_id=message_id,
        run_id=run_id,
        session_id=session_id,
        features=Features.from_hint(request.headers.get(HINT_HEADER)),
        approvals=approvals,
    )
    return sse_response(encoder, events, ping=s.settings.heartbeat_interval)


# resuming ----------------------------------------------------------------------------------


async def resume_stream(
    chat_id: str, request: Request, caller: Principal, s: Services, reply: Reply = UI_STREAM
) -> Response:
    """The chat's active run from its start, to its end or to the suspension it waits in now
    (idle when it waits with no log); or what a run did after an approval timed out, which no
    response carried; idle when there is neither."""
    convo = await doors.find_conversation(s, caller, chat_id)
    run = await s.store.latest_run(convo.user_id, convo.id) if convo is not None else None
    if convo is None or run is None:
        return idle(reply)
    user = run.user_id
    timed_out = await _untold_timeout(user, s, run)
    if timed_out:
        return await _after_timeout(timed_out, request, caller, s, run, reply)
    if run.status not in ("running", "awaiting"):
        return idle(reply)
    if run.status == "awaiting" and not await s.runs.hub.exists(run.id):
        return idle(reply)

    async def is_current() -> bool:
        return await doors.run_awaiting(s, user, run.id)

    events = doors.until_suspended(s.runs.events(caller, run.id), is_current)
    return stream(request, s, events, run.message_id, run.id, convo.id, reply)


async def _untold_timeout(user: str, s: Services, run: Run) -> list[PendingInput]:
    """``run``'s approvals that timed out and that no resume has told a client of yet: the
    stream of the client that was asked ended at them."""
    told = run.state.timeout_told if run.state else ()
    return [
        p
        for p in await s.store.pending_for_run(user, run.id)
        if p.kind == "approval" and p.status == "expired" and p.id not in told
    ]


async def _after_timeout(
    expired: list[PendingInput],
    request: Request,
    caller: Principal,
    s: Services,
    run: Run,
    reply: Reply,
) -> Response:
    """The run from the suspension whose approvals timed out: their denial (``by: timeout``)
    and what the run did next, to its end or to the suspension it waits in now."""
    calls = {p.tool_call_id for p in expired}
    user = run.user_id

    async def is_current() -> bool:
        return await doors.run_awaiting(s, user, run.id)

    async def told() -> None:
        fresh = await s.store.get_run(user, run.id)
        state = fresh.state or RunState()
        told = (*state.timeout_told, *(p.id for p in expired))
        await s.store.set_run(user, run.id, state=state.model_copy(update={"timeout_told": told}))

    rest = doors.continuation(
        s.runs.events(caller, run.id),
        lambda e: isinstance(e, ev.RunSuspended) and bool(calls & set(e.waiting_for)),
    )
    events = _then(doors.until_suspended(rest, is_current), told)
    approvals = [asked(p) for p in expired]
    return stream(request, s, events, run.message_id, run.id, run.conversation_id, reply, approvals)


def asked(pending: PendingInput) -> dict[str, Any]:
    """The ``tool-approval`` data of a stored approval, as it was asked."""
    ask = pending.payload
    approval = ask if isinstance(ask, ApprovalAsk) else ApprovalAsk(tool_name="")
    return approval_data(
        approval_id=pending.id,
        tool_call_id=pending.tool_call_id or "",
        tool_name=approval.tool_name,
        args=approval.args,
        run_id=pending.run_id,
        expires_at=pending.expires_at.isoformat(),
    )


async def _then(events: doors.Events, after: Callable[[], Awaitable[None]]) -> doors.Events:
    """``events``, then ``after()`` once they were all sent (not when the client left)."""
    async for item in events:
        yield item
    await after()


def idle(reply: Reply) -> Response:
    """Nothing to resume: a 204, or an empty data stream for ai@4 (whose client takes a
    response with no body for a failure, "The response body is empty")."""
    if reply.data_stream:
        headers = {"X-Vercel-AI-Data-Stream": "v1"}
        return Response(media_type=VercelDataStream.content_type, headers=headers)
    return Response(status_code=204)
