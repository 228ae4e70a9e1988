"""The small SSE dialects of the apps parley replaces: session chat and the todo assistant.

Session chat (``POST /sessions/{id}/chat``): named events ``chunk`` / ``complete`` / ``error``
with data ``{"type": "chunk", "content"}``, ``{"type": "complete", "content", "message_id",
"session_id"}`` and ``{"type": "error", "error": {"message", "code"}}``.

Todo assistant (``POST /api/{user_id}/chat`` with ``Accept: text/event-stream``): unnamed
``data:`` events ``{"type": "chunk", "content"}``, ``{"type": "tool_call", "tool_name",
"args"}``, ``{"type": "tool_result", "tool_name", "result"}``, ``{"type": "approval_required",
"tool_name", "tool_call_id", "args", "run_id"}``, ``{"type": "error", "error": {...}}`` and last
``{"type": "done", "message_id", "conversation_id", "content"}``.

Neither ends with ``[DONE]``: those clients parse every ``data:`` line as JSON.
"""

from __future__ import annotations

from typing import Any

from sse_starlette import ServerSentEvent

from parley.chat import events as ev
from parley.protocols.base import Encoder, Frames, sse
from parley.wire import compact


def _event(kind: str, payload: dict[str, Any], *, named: bool) -> ServerSentEvent:
    data = compact({"type": kind, **payload})
    return sse(data, event=kind if named else None)


def _approval_text(event: ev.RunSuspended, run_id: str) -> str:
    calls = ", ".join(event.waiting_for)
    return (
        f"waiting for approval of tool call(s) {calls}: "
        f"POST /api/runs/{run_id}/approvals/{{tool_call_id}}"
    )


class SessionChatSSE(Encoder):
    """``event: chunk|complete|error`` for session chat."""

    def __init__(self, *, session_id: str, run_id: str) -> None:
        self.session_id = session_id
        self.run_id = run_id
        self._text: list[str] = []

    @property
    def headers(self) -> dict[str, str]:
        return {**super().headers, "X-Chat-Session-Id": self.session_id, "X-Run-Id": self.run_id}

    def encode(self, seq: int, event: ev.EngineEvent) -> Frames:
        match event:
            case ev.TextDelta():
                self._text.append(event.content)
                return [_event("chunk", {"content": event.content}, named=True)]
            case ev.RunFinished():
                payload = {
                    "content": "".join(self._text),
                    "message_id": event.message_id,
                    "session_id": self.session_id,
                }
                return [_event("complete", payload, named=True)]
            case ev.RunSuspended():
                return self.error_frames(
                    "ERR_APPROVAL_REQUIRED", _approval_text(event, self.run_id)
                )
            case ev.RunFailed():
                return self.error_frames(event.code, event.message)
        return []

    def after_stream(self) -> Frames:
        return []

    def error_frames(self, code: str, message: str) -> Frames:
        return [_event("error", {"error": {"message": message, "code": code}}, named=True)]


class TodoChatSSE(Encoder):
    """``data: {"type": ...}`` for the todo assistant."""

    def __init__(self, *, conversation_id: str, run_id: str) -> None:
        self.conversation_id = conversation_id
        self.run_id = run_id
        self._text: list[str] = []

    @property
    def headers(self) -> dict[str, str]:
        return {
            **super().headers,
            "X-Chat-Session-Id": self.conversation_id,
            "X-Run-Id": self.run_id,
        }

    def encode(self, seq: int, event: ev.EngineEvent) -> Frames:
        match event:
            case ev.TextDelta():
                self._text.append(event.content)
                return [_event("chunk", {"content": event.content}, named=False)]
            case ev.ToolCallReady():
                payload = {"tool_name": event.tool_name, "args": event.args}
                return [_event("tool_call", payload, named=False)]
            case ev.ToolResult():
                payload = {"tool_name": event.tool_name, "result": event.result}
                return [_event("tool_result", payload, named=False)]
            case ev.ToolFailed():
                payload = {"tool_name": event.tool_name, "error": event.error}
                return [_event("tool_error", payload, named=False)]
            case ev.ApprovalRequested():
                payload = {
                    "tool_name": event.tool_name,
                    "tool_call_id": event.tool_call_id,
                    "args": event.args,
                    "run_id": self.run_id,
                }
                return [_event("approval_required", payload, named=False)]
        return self._end(event)

    def _end(self, event: ev.EngineEvent) -> Frames:
        match event:
            case ev.RunFinished() | ev.RunSuspended():
                payload = {
                    "message_id": event.message_id,
                    "conversation_id": self.conversation_id,
                    "content": "".join(self._text),
                }
                return [_event("done", payload, named=False)]
            case ev.RunFailed():
                return self.error_frames(event.code, event.message)
        return []

    def after_stream(self) -> Frames:
        return []

    def error_frames(self, code: str, message: str) -> Frames:
        return [_event("error", {"error": {"code": code, "message": message}}, named=False)]
