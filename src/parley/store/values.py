"""What the store hands out: frozen values built from rows, never ORM objects.

Attribute names are the tables' (``Conversation.metadata_`` for the ``metadata`` column). A value
is a snapshot: to change a row, call the store.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from typing import Any, Final, Literal, NotRequired, Protocol, TypedDict, get_args

from pydantic import BaseModel, ConfigDict, Field

from parley.chat.messages import Part
from parley.errors import ErrorInfo


def utcnow() -> datetime:
    return datetime.now(UTC)


class _Keep(Enum):
    KEEP = "keep"


KEEP: Final = _Keep.KEEP
"""A column an update leaves as it is (``None`` is a value: it sets NULL)."""
Keep = Literal[_Keep.KEEP]


def given(**values: Any) -> dict[str, Any]:
    """The columns an update sets: the values that are not :data:`KEEP`."""
    return {name: value for name, value in values.items() if value is not KEEP}


class Caller(Protocol):
    """Who asks (:class:`parley.auth.Principal`): the token's ``sub``, and its organisation
    claim, which confines the projects it makes and reaches."""

    @property
    def user_id(self) -> str: ...

    @property
    def org_id(self) -> str | None: ...


Role = Literal["read", "write", "deploy", "admin"]
ROLES: tuple[Role, ...] = get_args(Role)  # each role holds the ones before it
OWN: Final[Role] = "admin"  # a user's role in a conversation of their own, outside projects
_RANK: dict[str, int] = {role: rank for rank, role in enumerate(ROLES)}


def holds(role: str, need: Role) -> bool:
    """Whether ``role`` is ``need`` or above it."""
    return role in _RANK and _RANK[role] >= _RANK[need]


@dataclass(frozen=True, slots=True, kw_only=True)
class Conversation:
    id: str
    user_id: str  # the user its rows are kept under (in a project, the member who made it)
    project_id: str | None = None
    title: str | None = None
    summary: str | None = None
    summary_message_id: str | None = None  # the newest message the summary covers
    model: str | None = None
    provider: str | None = None
    temperature: float | None = None
    system: str | None = None
    profile: str | None = None
    metadata_: dict[str, Any] = field(default_factory=dict)
    active_leaf_id: str | None = None
    external_id: str | None = None
    status: str = "active"  # or "archived"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> Conversation:
        values = dict(row)
        values["metadata_"] = values.pop("metadata") or {}
        return cls(**values)


@dataclass(frozen=True, slots=True, kw_only=True)
class Reach:
    """A conversation as one caller reaches it: their role in it, and what its project adds to
    every turn (its instructions, its default profile)."""

    conversation: Conversation
    role: Role
    instructions: str | None = None
    default_profile: str | None = None

    @property
    def owner(self) -> str:
        """The user the conversation's rows are kept under: what the store's statements take."""
        return self.conversation.user_id


@dataclass(frozen=True, slots=True, kw_only=True)
class Project:
    """A project, with the caller's role in it."""

    id: str
    name: str
    owner: str
    role: Role
    description: str | None = None
    org_id: str | None = None
    instructions: str | None = None
    default_profile: str | None = None
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)


@dataclass(frozen=True, slots=True, kw_only=True)
class Member:
    user_id: str
    role: Role
    created_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """A stored message; an in-memory one (a subagent's task) needs only ``role`` and
    ``parts``."""

    role: str
    parts: list[Part]
    id: str = ""
    conversation_id: str = ""
    user_id: str = ""
    parent_id: str | None = None
    depth: int = 0
    text: str = ""
    status: str = "complete"
    model: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    error: ErrorInfo | None = None
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)


class ToolChoice(BaseModel):
    """Which tools a suspended run had: what :class:`~parley.engine.toolset.ToolSet` is made of."""

    model_config = ConfigDict(frozen=True)

    patterns: list[str] | None = None
    servers: list[str] | None = None
    approve_all: bool = False


class RunState(BaseModel):
    """What a run suspended for a person needs to continue (``runs.state``)."""

    model_config = ConfigDict(frozen=True)

    step: int = 0
    max_steps: int | None = None
    model: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    system: str | None = None
    tools: ToolChoice = ToolChoice()
    actor: str | None = None  # a project member who asked for the turn (None: the owner)
    timeout_told: tuple[str, ...] = ()  # approvals that timed out which a resumed stream told of


@dataclass(frozen=True, slots=True, kw_only=True)
class Run:
    id: str
    user_id: str
    conversation_id: str
    message_id: str
    user_message_id: str | None = None
    status: str = "running"
    model: str | None = None
    state: RunState | None = None  # set while the run is suspended
    owner: str | None = None
    created_at: datetime = field(default_factory=utcnow)
    finished_at: datetime | None = None
    last_event_id: int = 0

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> Run:
        values = dict(row)
        state = values.pop("state")
        return cls(**values, state=RunState.model_validate(state) if state else None)


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolCall:
    """A row of the audit log: one tool call the model asked for."""

    id: str
    tool_call_id: str
    run_id: str
    conversation_id: str
    message_id: str
    user_id: str
    tool_name: str
    status: str
    server: str | None = None
    arguments: dict[str, Any] = field(default_factory=dict)
    result: Any = None
    error: str | None = None
    read_only: bool = False
    approved_by: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    created_at: datetime = field(default_factory=utcnow)


class ToolCallEnd(TypedDict):
    """How a tool call ended, as its audit row takes it (``AuditStore.update_tool_call``)."""

    status: Literal["succeeded", "failed", "timed_out"]
    error: NotRequired[str]
    result: NotRequired[Any]


class ApprovalAsk(BaseModel):
    """An approval's question: the call the model made, and its audit row. ``resumed`` is set
    once the run went on past the answer, so a later resumption does not act on it again."""

    model_config = ConfigDict(frozen=True)

    tool_name: str
    server: str | None = None  # the MCP server of the tool (None: parley's own)
    args: dict[str, Any] = Field(default_factory=dict)
    audit_id: str | None = None
    resumed: bool = False


class ElicitationAsk(BaseModel):
    """A server's question to the person: its text and the form of the answer (stored as
    ``schema``)."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    message: str = ""
    requested_schema: dict[str, Any] = Field(default_factory=dict, alias="schema")
    server: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PendingInput:
    """An approval or elicitation waiting for a person, with what the run needs to continue."""

    id: str
    kind: Literal["approval", "elicitation"]
    run_id: str
    user_id: str
    conversation_id: str
    expires_at: datetime
    payload: ApprovalAsk | ElicitationAsk
    tool_call_id: str | None = None
    status: str = "pending"
    answer: dict[str, Any] | None = None
    created_at: datetime = field(default_factory=utcnow)
    answered_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ApprovalRule:
    id: str
    user_id: str
    scope: str  # tool | server
    name: str
    created_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class Task:
    id: int
    user_id: str
    title: str
    description: str | None
    completed: bool
    created_at: datetime
    updated_at: datetime
