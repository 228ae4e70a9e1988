"""Request and response bodies of the native API (DESIGN.md section 3)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from parley.chat.files import file_part
from parley.chat.messages import Part
from parley.store.tables import Conversation, Message, PendingInput, ToolCall

_STRICT = ConfigDict(extra="forbid", str_max_length=200_000)


class ConversationCreate(BaseModel):
    model_config = _STRICT

    title: str | None = Field(default=None, max_length=500)
    model: str | None = Field(default=None, max_length=255)
    provider: str | None = Field(default=None, max_length=100)
    temperature: float | None = Field(default=None, ge=0, le=2)
    system: str | None = Field(default=None, max_length=100_000)
    profile: str | None = Field(default=None, max_length=100)
    metadata: dict[str, Any] | None = None


class ConversationPatch(ConversationCreate):
    pass


class ForkRequest(BaseModel):
    model_config = _STRICT
    message_id: str = Field(max_length=40)


class BranchSwitch(BaseModel):
    model_config = _STRICT
    message_id: str = Field(max_length=40)


class Attachment(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["image", "file", "text"] = "file"
    name: str | None = Field(default=None, max_length=255)
    media_type: str = Field(max_length=100)
    url: str | None = Field(default=None, max_length=10_000_000)
    data: str | None = Field(default=None, max_length=10_000_000)

    def to_part(self, field: str) -> Part:
        """The stored file part (:func:`parley.chat.files.file_part`); ``field`` names this
        attachment in the 400 when its URL or data cannot be read."""
        return file_part(
            url=self.url,
            data=self.data,
            media_type=self.media_type,
            filename=self.name,
            field=field,
        )


class SendMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    content: str = ""
    attachments: list[Attachment] = Field(default_factory=list, max_length=1_000)
    parent_id: str | None = Field(default=None, max_length=40)
    model: str | None = Field(default=None, max_length=255)
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1, le=1_000_000)
    profile: str | None = Field(default=None, max_length=100)
    stream: bool | None = None


class EditMessage(SendMessage):
    pass


class Regenerate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(default=None, max_length=255)
    temperature: float | None = Field(default=None, ge=0, le=2)
    stream: bool | None = None


class ApprovalAnswer(BaseModel):
    model_config = _STRICT

    approved: bool
    reason: str | None = Field(default=None, max_length=2_000)
    remember: Literal["tool", "server"] | None = None


class ElicitationAnswer(BaseModel):
    model_config = _STRICT

    action: Literal["accept", "decline", "cancel"]
    content: dict[str, Any] | None = None


def usage_of(row: Conversation | Message) -> dict[str, int]:
    return {
        "prompt_tokens": row.prompt_tokens,
        "completion_tokens": row.completion_tokens,
        "total_tokens": row.prompt_tokens + row.completion_tokens,
    }


def conversation_out(convo: Conversation) -> dict[str, Any]:
    return {
        "id": convo.id,
        "title": convo.title,
        "summary": convo.summary,
        "model": convo.model,
        "provider": convo.provider,
        "temperature": convo.temperature,
        "system": convo.system,
        "profile": convo.profile,
        "metadata": convo.metadata_ or {},
        "active_leaf_id": convo.active_leaf_id,
        "created_at": _iso(convo.created_at),
        "updated_at": _iso(convo.updated_at),
        "usage": usage_of(convo),
        "cost": round(convo.cost, 6),
    }


def message_out(message: Message, siblings: list[str] | None = None) -> dict[str, Any]:
    out = {
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
    out = {
        "id": pending.id,
        "kind": pending.kind,
        "run_id": pending.run_id,
        "tool_call_id": pending.tool_call_id,
        "status": pending.status,
        "expires_at": _iso(pending.expires_at),
    }
    if pending.kind == "approval":
        out.update(tool_name=pending.payload.get("tool_name"), args=pending.payload.get("args"))
    else:
        out.update(
            elicitation_id=pending.id,
            message=pending.payload.get("message"),
            requested_schema=pending.payload.get("schema"),
        )
    return out


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


class SigninLinkCode(BaseModel):
    model_config = _STRICT
    code: str = Field(min_length=1, max_length=128)


class SignedIn(BaseModel):
    """A bearer token for the user a sign-in link was printed for."""

    token: str
    user: str
    expires_in: int
