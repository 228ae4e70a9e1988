"""The engine's events: one closed, tagged union of small pydantic models.

Every door (native SSE, Vercel UI stream, OpenAI chunks, WebSocket progress, the seed dialects) is an
encoder over this stream. The run hub gives each event an increasing sequence number.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True)


class RunStarted(_Event):
    type: Literal["run_started"] = "run_started"
    run_id: str
    conversation_id: str
    user_message_id: str | None
    message_id: str
    model: str
    side_effects: list[dict[str, Any]] = Field(default_factory=list)


class TextDelta(_Event):
    type: Literal["text_delta"] = "text_delta"
    content: str


class ReasoningDelta(_Event):
    type: Literal["reasoning_delta"] = "reasoning_delta"
    content: str


class ToolCallStarted(_Event):
    type: Literal["tool_call_started"] = "tool_call_started"
    tool_call_id: str
    tool_name: str
    dynamic: bool = True


class ToolCallArgsDelta(_Event):
    type: Literal["tool_call_args_delta"] = "tool_call_args_delta"
    tool_call_id: str
    delta: str


class ToolCallReady(_Event):
    type: Literal["tool_call_ready"] = "tool_call_ready"
    tool_call_id: str
    tool_name: str
    args: dict[str, Any]
    dynamic: bool = True


class ApprovalRequested(_Event):
    type: Literal["approval_requested"] = "approval_requested"
    tool_call_id: str
    tool_name: str
    args: dict[str, Any]
    approval_id: str
    expires_at: str
    server: str | None = None  # the MCP server the tool is from


class ApprovalResolved(_Event):
    type: Literal["approval_resolved"] = "approval_resolved"
    tool_call_id: str
    tool_name: str
    approved: bool
    reason: str | None = None
    by: str | None = None


class ElicitationRequested(_Event):
    type: Literal["elicitation_requested"] = "elicitation_requested"
    elicitation_id: str
    tool_call_id: str | None
    server: str
    message: str
    requested_schema: dict[str, Any]
    expires_at: str


class ElicitationResolved(_Event):
    type: Literal["elicitation_resolved"] = "elicitation_resolved"
    elicitation_id: str
    action: Literal["accept", "decline", "cancel"]


class ToolProgress(_Event):
    type: Literal["tool_progress"] = "tool_progress"
    tool_call_id: str
    tool_name: str
    message: str
    progress: float | None = None
    total: float | None = None


class ToolResult(_Event):
    type: Literal["tool_result"] = "tool_result"
    tool_call_id: str
    tool_name: str
    result: Any
    dynamic: bool = True


class ToolFailed(_Event):
    type: Literal["tool_failed"] = "tool_failed"
    tool_call_id: str
    tool_name: str
    error: str
    denied: bool = False
    dynamic: bool = True


class StepFinished(_Event):
    type: Literal["step_finished"] = "step_finished"
    step: int
    finish_reason: str


class Usage(_Event):
    type: Literal["usage"] = "usage"
    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class StepLimitReached(_Event):
    """The model was still calling tools when the run's step limit stopped it."""

    type: Literal["step_limit_reached"] = "step_limit_reached"
    max_steps: int

    @property
    def message(self) -> str:
        return (
            f"Stopped after {self.max_steps} steps: the model kept calling tools and gave no"
            " final answer."
        )


class RunFinished(_Event):
    type: Literal["run_finished"] = "run_finished"
    message_id: str
    finish_reason: Literal[
        "stop", "length", "tool_calls", "cancelled", "awaiting_input", "max_steps"
    ]
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class RunSuspended(_Event):
    """The run waits for a person (approvals); it holds no task until they answer."""

    type: Literal["run_suspended"] = "run_suspended"
    message_id: str
    waiting_for: list[str] = Field(default_factory=list)


class RunFailed(_Event):
    """The run ended with an error: its ``code`` and ``message`` as clients are told them, and
    the HTTP ``status`` of the error's class (a door answering in JSON answers with it: 502
    for a model that answered with an error, 503 for one that could not be reached)."""

    type: Literal["run_failed"] = "run_failed"
    message_id: str | None
    code: str
    message: str
    status: int = 500


EngineEvent = Annotated[
    RunStarted
    | TextDelta
    | ReasoningDelta
    | ToolCallStarted
    | ToolCallArgsDelta
    | ToolCallReady
    | ApprovalRequested
    | ApprovalResolved
    | ElicitationRequested
    | ElicitationResolved
    | ToolProgress
    | ToolResult
    | ToolFailed
    | StepFinished
    | Usage
    | StepLimitReached
    | RunFinished
    | RunSuspended
    | RunFailed,
    Field(discriminator="type"),
]

TERMINAL = (RunFinished, RunFailed)

event_adapter: TypeAdapter[EngineEvent] = TypeAdapter(EngineEvent)


def is_terminal(event: EngineEvent) -> bool:
    return isinstance(event, TERMINAL)


def dump_event(event: EngineEvent) -> str:
    return event.model_dump_json()


def load_event(raw: str | bytes) -> EngineEvent:
    return event_adapter.validate_json(raw)
