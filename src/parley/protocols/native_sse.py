"""parley's native SSE: ``id:`` (the run sequence), ``event:`` and ``data:`` JSON with ``type``.

:class:`UnnamedSSE` is the same stream as EditorChat's server sends it: no ``event:`` line (an
``EventSource``'s ``onmessage`` sees every event; the ``type`` is in the JSON), after ``: ok``.
"""

from __future__ import annotations

from typing import Any

from sse_starlette import ServerSentEvent

from parley.chat import events as ev
from parley.protocols.base import Encoder, Frames, sse
from parley.wire import compact


def _frame(
    seq: int | None, kind: str, payload: dict[str, Any], *, named: bool = True
) -> ServerSentEvent:
    data = compact({"type": kind, **payload})
    return sse(data, event=kind if named else None, id=str(seq) if seq is not None else None)


def native_payload(event: ev.EngineEvent) -> tuple[str, dict[str, Any]] | None:
    """The native event name and payload for an engine event, or None when it has none."""
    match event:
        case ev.RunStarted():
            payload = event.model_dump(include={"run_id", "conversation_id", "user_message_id"})
            payload.update(message_id=event.message_id, model=event.model)
            if event.side_effects:
                payload["side_effects"] = event.side_effects
            return "start", payload
        case ev.TextDelta():
            return "content", {"content": event.content}
        case ev.ReasoningDelta():
            return "reasoning", {"content": event.content}
        case ev.ToolCallReady():
            return "tool_call_start", event.model_dump(
                include={"tool_call_id", "tool_name", "args"}
            )
        case ev.ApprovalRequested():
            return "tool_approval_required", event.model_dump(exclude={"type"})
        case ev.ApprovalResolved():
            return "tool_approval_resolved", event.model_dump(exclude={"type"})
        case ev.ElicitationRequested():
            return "elicitation", event.model_dump(exclude={"type"})
        case ev.ElicitationResolved():
            return "elicitation_resolved", event.model_dump(exclude={"type"})
        case ev.ToolProgress():
            return "tool_progress", event.model_dump(exclude={"type"})
        case ev.ToolResult():
            return "tool_result", event.model_dump(include={"tool_call_id", "tool_name", "result"})
        case ev.ToolFailed():
            return "tool_error", event.model_dump(include={"tool_call_id", "tool_name", "error"})
        case ev.RunSuspended():
            return "awaiting_input", {
                "message_id": event.message_id,
                "waiting_for": event.waiting_for,
            }
        case ev.StepLimitReached():
            return "notice", {"code": "max_steps", "message": event.message}
        case ev.RunFailed():
            return "error", {"error": {"code": event.code, "message": event.message}}
        case ev.RunFinished():
            return "done", {
                "message_id": event.message_id,
                "finish_reason": event.finish_reason,
                "tokensUsed": {
                    "prompt": event.prompt_tokens,
                    "completion": event.completion_tokens,
                    "total": event.total_tokens,
                },
            }
    return None


class NativeSSE(Encoder):
    with_ids = True
    named = True  # each event's name on an ``event:`` line

    def __init__(self, *, run_id: str, conversation_id: str) -> None:
        self.run_id = run_id
        self.conversation_id = conversation_id

    @property
    def headers(self) -> dict[str, str]:
        return {
            **super().headers,
            "X-Chat-Session-Id": self.conversation_id,
            "X-Run-Id": self.run_id,
        }

    def encode(self, seq: int, event: ev.EngineEvent) -> Frames:
        found = native_payload(event)
        return [] if found is None else [_frame(seq, *found, named=self.named)]

    def error_frames(self, code: str, message: str) -> Frames:
        error = {"error": {"code": code, "message": message}}
        return [_frame(None, "error", error, named=self.named)]


class UnnamedSSE(NativeSSE):
    """The seed dialect of the native door, for EditorChat's client: its reader takes unnamed
    ``data:`` events only (``onmessage``, or a fetch reader on ``data: ``), and its server
    opens the stream with an ``ok`` comment."""

    named = False

    def before_stream(self) -> Frames:
        return [sse(comment="ok")]
