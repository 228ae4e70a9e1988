"""The native API's response shapes: stored values as the routes answer them (DESIGN.md
section 3); the request bodies are in :mod:`parley.api.schemas`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from parley.store.values import (
    ApprovalAsk,
    Conversation,
    Member,
    Message,
    PendingInput,
    Project,
    Role,
    ToolCall,
)


def usage_of(row: Conversation | Message) -> dict[str, int]:
    return {
        "prompt_tokens": row.prompt_tokens,
        "completion_tokens": row.completion_tokens,
        "total_tokens": row.prompt_tokens + row.completion_tokens,
    }


def conversation_out(convo: Conversation, role: Role | None = None) -> dict[str, Any]:
    """A conversation; ``role``, the caller's in it, where the route knows it."""
    out: dict[str, Any] = {
        "id": convo.id,
        "project_id": convo.project_id,
        "title": convo.title,
        "summary": convo.summary,
        "summary_message_id": convo.summary_message_id,
        "model": convo.model,
        "provider": convo.provider,
        "temperature": convo.temperature,
        "system": convo.system,
        "profile": convo.profile,
        "metadata": convo.metadata_ or {},
        "active_leaf_id": convo.active_leaf_id,
        "status": convo.status,
        "created_at": _iso(convo.created_at),
        "updated_at": _iso(convo.updated_at),
        "usage": usage_of(convo),
        "cost": round(convo.cost, 6),
    }
    if role is not None:
        out["role"] = role
    return out


def project_out(project: Project, members: list[Member] | None = None) -> dict[str, Any]:
    """A project with the caller's ``role`` in it (and its members, where asked)."""
    out: dict[str, Any] = {
        "id": project.id,
        "name": project.name,
        "description": project.description,
        "owner": project.owner,
        "org_id": project.org_id,
        "instructions": project.instructions,
        "default_profile": project.default_profile,
        "role": project.role,
        "created_at": _iso(project.created_at),
        "updated_at": _iso(project.updated_at),
    }
    if members is not None:
        out["members"] = [member_out(m) for m in members]
    return out


def member_out(member: Member) -> dict[str, Any]:
    return {"user_id": member.user_id, "role": member.role, "added_at": _iso(member.created_at)}


def message_out(message: Message, siblings: list[str] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": message.id,
        "parent_id": message.parent_id,
        "role": message.role,
        "parts": message.parts,
        "status": message.status,
        "usage": usage_of(message),
        "cost": round(message.cost, 6),
        "model": message.model,
        "created_at": _iso(message.created_at),
    }
    if message.error:
        out["error"] = message.error
    if siblings is not None:
        out["siblings"] = siblings
    return out


def tool_call_out(call: ToolCall) -> dict[str, Any]:
    return {
        "id": call.id,
        "tool_call_id": call.tool_call_id,
        "run_id": call.run_id,
        "message_id": call.message_id,
        "tool_name": call.tool_name,
        "server": call.server,
        "arguments": call.arguments,
        "result": call.result,
        "error": call.error,
        "status": call.status,
        "read_only": call.read_only,
        "approved_by": call.approved_by,
        "started_at": _iso(call.started_at),
        "finished_at": _iso(call.finished_at),
    }


def pending_out(pending: PendingInput) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": pending.id,
        "kind": pending.kind,
        "run_id": pending.run_id,
        "tool_call_id": pending.tool_call_id,
        "status": pending.status,
        "expires_at": _iso(pending.expires_at),
    }
    ask = pending.payload
    if isinstance(ask, ApprovalAsk):
        out.update(tool_name=ask.tool_name, server=ask.server, args=ask.args)
    else:
        out.update(
            elicitation_id=pending.id, message=ask.message, requested_schema=ask.requested_schema
        )
    return out


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
