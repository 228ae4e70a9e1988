"""Runs: follow or resume a stream, cancel, answer approvals and elicitations, remembered rules,
and the profiles a run can be given.

Reading a run (its events, its state, a ticket) needs ``read`` in its conversation; cancelling
and answering need ``write`` (:meth:`parley.store.Store.reach_run`). A browser ``EventSource``
cannot send ``Authorization``: the page asks ``POST
/api/runs/{run_id}/ticket`` (bearer) for a short-lived ticket and opens
``/api/runs/{run_id}/events?ticket=``; the ticket opens that run's events and nothing else.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Response

from parley.api.deps import CurrentCaller, CurrentUser, RunReader, ServicesDep
from parley.api.openapi import STREAM_RESPONSES
from parley.api.schemas import ApprovalAnswer, ElicitationAnswer, RunTicketIssued
from parley.api.streaming import sse_response
from parley.engine.profiles import BUILTIN_PROFILES
from parley.errors import ValidationFailed
from parley.protocols.native_sse import NativeSSE

router = APIRouter(tags=["runs"])


def _after(last_event_id: str | None, after: int | None) -> int:
    if after is not None:
        return after
    if not last_event_id:
        return 0
    try:
        return max(0, int(last_event_id))
    except ValueError as exc:
        raise ValidationFailed("Last-Event-ID must be an event id from this run") from exc


@router.get("/api/runs/{run_id}/events", response_model=None, responses=STREAM_RESPONSES)
async def events(
    run_id: str,
    caller: RunReader,
    s: ServicesDep,
    last_event_id: Annotated[str | None, Header(max_length=20)] = None,
    after: Annotated[int | None, Query(ge=0)] = None,
) -> Response:
    """The run's native SSE stream, from the start or after ``Last-Event-ID``; authorized by
    the bearer token or by a ``?ticket=`` for this run."""
    run = await s.store.reach_run(caller, run_id)
    stream = s.runs.events(caller, run_id, _after(last_event_id, after))
    encoder = NativeSSE(run_id=run.id, conversation_id=run.conversation_id)
    return sse_response(encoder, stream, ping=s.settings.heartbeat_interval)


@router.post("/api/runs/{run_id}/ticket")
async def ticket(run_id: str, caller: CurrentCaller, s: ServicesDep) -> RunTicketIssued:
    """A ticket that opens this run's events (``?ticket=``) for a client that cannot send a
    header (a browser ``EventSource``), for ``expires_in`` seconds."""
    run = await s.store.reach_run(caller, run_id)
    issued = s.tickets.issue(caller, run.id)
    return RunTicketIssued(ticket=issued, expires_in=s.tickets.ttl)


@router.get("/api/runs/{run_id}")
async def get_run(run_id: str, caller: CurrentCaller, s: ServicesDep) -> dict[str, Any]:
    run = await s.store.reach_run(caller, run_id)
    return {
        "id": run.id,
        "conversation_id": run.conversation_id,
        "message_id": run.message_id,
        "user_message_id": run.user_message_id,
        "status": run.status,
        "model": run.model,
    }


@router.post("/api/runs/{run_id}/cancel")
async def cancel(run_id: str, caller: CurrentCaller, s: ServicesDep) -> dict[str, Any]:
    status = await s.runs.cancel(caller, run_id)
    return {"run_id": run_id, "status": status}


@router.post("/api/runs/{run_id}/approvals/{tool_call_id}")
async def approve(
    run_id: str, tool_call_id: str, body: ApprovalAnswer, caller: CurrentCaller, s: ServicesDep
) -> dict[str, Any]:
    await s.runs.answer_approval(
        caller,
        run_id,
        tool_call_id,
        approved=body.approved,
        reason=body.reason,
        remember=body.remember,
    )
    return {"run_id": run_id, "tool_call_id": tool_call_id, "approved": body.approved}


@router.post("/api/runs/{run_id}/elicitations/{elicitation_id}")
async def elicit(
    run_id: str,
    elicitation_id: str,
    body: ElicitationAnswer,
    caller: CurrentCaller,
    s: ServicesDep,
) -> dict[str, Any]:
    await s.runs.answer_elicitation(
        caller, run_id, elicitation_id, action=body.action, content=body.content
    )
    return {"run_id": run_id, "elicitation_id": elicitation_id, "action": body.action}


@router.get("/api/approval-rules")
async def rules(user: CurrentUser, s: ServicesDep) -> dict[str, Any]:
    items = await s.store.list_rules(user)
    return {
        "items": [
            {"id": r.id, "scope": r.scope, "name": r.name, "created_at": r.created_at.isoformat()}
            for r in items
        ]
    }


@router.delete("/api/approval-rules/{rule_id}", status_code=204)
async def delete_rule(rule_id: str, user: CurrentUser, s: ServicesDep) -> Response:
    await s.store.delete_rule(user, rule_id)
    return Response(status_code=204)


@router.get("/api/profiles")
async def profiles(user: CurrentUser, s: ServicesDep) -> dict[str, Any]:
    """The profiles a conversation or a message may name, built-in and configured (a configured
    one replaces a built-in one of its name): names, descriptions and models, no system prompt."""
    configured = {**BUILTIN_PROFILES, **s.settings.profiles}
    return {
        "items": [
            {"name": name, "description": profile.description, "model": profile.model}
            for name, profile in sorted(configured.items())
        ]
    }


@router.get("/api/limits")
async def limits(user: CurrentUser, s: ServicesDep) -> dict[str, int]:
    """What one message may carry (:mod:`parley.engine.message_limits`), for a page to say so
    before it sends."""
    return {
        "message_chars": s.settings.max_message_chars,
        "attachments": s.settings.max_attachments,
        "attachment_bytes": s.settings.max_attachment_bytes,
    }
