"""One response folded from a run's events: for doors that answer with a single JSON body."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

from parley.chat import events as ev

CallStatus = Literal["requested", "awaiting_approval", "succeeded", "failed", "denied"]


@dataclass
class CallSummary:
    tool_call_id: str
    tool_name: str
    args: dict[str, Any]
    status: CallStatus = "requested"
    result: Any = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "tool_call_id": self.tool_call_id,
            "tool_name": self.tool_name,
            "args": self.args,
            "status": self.status,
            "result": self.result,
            "error": self.error,
        }


@dataclass
class Reply:
    """The text, tool calls, usage and outcome of one response (a run, or a run up to its
    suspension)."""

    message_id: str | None = None
    texts: list[str] = field(default_factory=list)
    tool_calls: dict[str, CallSummary] = field(default_factory=dict)
    outcome: ev.RunFinished | ev.RunFailed | ev.RunSuspended | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def text(self) -> str:
        return "".join(self.texts)

    @property
    def finish_reason(self) -> str:
        if isinstance(self.outcome, ev.RunFinished):
            return self.outcome.finish_reason
        if isinstance(self.outcome, ev.RunSuspended):
            return "awaiting_input"
        return "error"

    def add(self, event: ev.EngineEvent) -> bool:
        """Fold one event in; True once the response is over."""
        match event:
            case ev.RunStarted():
                self.message_id = event.message_id
            case ev.TextDelta():
                self.texts.append(event.content)
            case ev.ToolCallReady():
                self.tool_calls[event.tool_call_id] = CallSummary(
                    event.tool_call_id, event.tool_name, dict(event.args)
                )
            case ev.ApprovalRequested():
                self._set(event.tool_call_id, status="awaiting_approval")
            case ev.ToolResult():
                self._set(event.tool_call_id, status="succeeded", result=event.result)
            case ev.ToolFailed():
                status = "denied" if event.denied else "failed"
                self._set(event.tool_call_id, status=status, error=event.error)
            case ev.Usage():
                self.prompt_tokens += event.prompt_tokens
                self.completion_tokens += event.completion_tokens
            case ev.RunFinished() | ev.RunFailed() | ev.RunSuspended():
                self.outcome = event
                return True
        return False

    def _set(self, tool_call_id: str, **values: Any) -> None:
        call = self.tool_calls.get(tool_call_id)
        if call is not None:
            for name, value in values.items():
                setattr(call, name, value)


async def collect(events: AsyncIterator[tuple[int, ev.EngineEvent]]) -> Reply:
    """Read a run's events up to the end of this response, then let the subscription go."""
    reply = Reply()
    try:
        async for _, event in events:
            if reply.add(event):
                break
    finally:
        close = getattr(events, "aclose", None)
        if close is not None:
            await close()
    return reply
