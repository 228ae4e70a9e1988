"""Message parts in the Vercel UIMessage shapes, and a builder that folds engine events into them.

A part is a plain dict, stored and sent as it is; its type is one of the small TypedDicts below,
tagged by ``type``, so that ``part["type"] == "text"`` narrows it. A tool call is a
``dynamic-tool`` part in one of the v6 tool states, with its ``approval`` once one is asked.
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

from parley.chat import events as ev

Role = Literal["user", "assistant", "system", "tool"]
Status = Literal["streaming", "complete", "error", "cancelled", "interrupted", "awaiting"]
ToolState = Literal[
    "input-streaming",
    "input-available",
    "approval-requested",
    "approval-responded",
    "output-available",
    "output-error",
    "output-denied",
]


class TextUIPart(TypedDict):
    type: Literal["text"]
    text: str


class ReasoningUIPart(TypedDict):
    type: Literal["reasoning"]
    text: str


class FileUIPart(TypedDict):
    """A file: ``url`` is a link or a ``data:`` URL (:func:`parley.chat.files.file_part`)."""

    type: Literal["file"]
    mediaType: str
    url: str
    filename: NotRequired[str]


class StepStartUIPart(TypedDict):
    type: Literal["step-start"]


class ToolApproval(TypedDict):
    """The approval of a tool call: its id while asked, the answer once given."""

    id: str
    approved: NotRequired[bool]
    reason: NotRequired[str]


class DynamicToolUIPart(TypedDict):
    """A tool call: ``input`` its arguments (None while they stream), then ``output`` or
    ``errorText`` by ``state``."""

    type: Literal["dynamic-tool"]
    toolName: str
    toolCallId: str
    state: ToolState
    input: Any
    output: NotRequired[Any]
    errorText: NotRequired[str]
    approval: NotRequired[ToolApproval]


class Notice(TypedDict):
    code: str
    message: str


class NoticeUIPart(TypedDict):
    """Why a reply stopped short (``code`` ``max_steps``): shown, never sent to the model."""

    type: Literal["data-notice"]
    data: Notice


Part = (
    TextUIPart | ReasoningUIPart | FileUIPart | StepStartUIPart | DynamicToolUIPart | NoticeUIPart
)
TextKind = Literal["text", "reasoning"]


def text_of(parts: list[Part]) -> str:
    """The plain text of a message: its text parts joined."""
    return "".join(p.get("text", "") for p in parts if p["type"] == "text")


class PartsBuilder:
    """Folds engine events into UIMessage parts. Pure: no I/O, cheap per token."""

    def __init__(self, parts: list[Part] | None = None) -> None:
        self._parts: list[Part] = [p.copy() for p in parts or []]
        self._tools: dict[str, DynamicToolUIPart] = {
            p["toolCallId"]: p for p in self._parts if p["type"] == "dynamic-tool"
        }
        self._open: TextUIPart | ReasoningUIPart | None = None
        # Text of the open part not yet joined into it: adding each delta to the part's string
        # copied the whole text every time (a reply of 10,000 deltas copied ~300 MB).
        self._pending: list[str] = []

    @property
    def parts(self) -> list[Part]:
        self._join()
        return self._parts

    def _join(self) -> None:
        if self._pending and self._open is not None:
            self._open["text"] += "".join(self._pending)
            self._pending.clear()

    def start_step(self) -> None:
        self._join()
        self._parts.append({"type": "step-start"})
        self._open = None

    def apply(self, event: ev.EngineEvent) -> None:
        handler = getattr(self, f"_on_{event.type}", None)
        if handler is not None:
            handler(event)

    def _append_text(self, kind: TextKind, content: str) -> None:
        if self._open is None or self._open["type"] != kind:
            self._join()
            self._open = (
                {"type": "text", "text": ""}
                if kind == "text"
                else {"type": "reasoning", "text": ""}
            )
            self._parts.append(self._open)
        self._pending.append(content)

    def _on_text_delta(self, event: ev.TextDelta) -> None:
        self._append_text("text", event.content)

    def _on_reasoning_delta(self, event: ev.ReasoningDelta) -> None:
        self._append_text("reasoning", event.content)

    def _tool(self, tool_call_id: str, tool_name: str) -> DynamicToolUIPart:
        part = self._tools.get(tool_call_id)
        if part is None:
            part = {
                "type": "dynamic-tool",
                "toolName": tool_name,
                "toolCallId": tool_call_id,
                "state": "input-streaming",
                "input": None,
            }
            self._tools[tool_call_id] = part
            self._join()
            self._parts.append(part)
            self._open = None
        return part

    def _on_tool_call_ready(self, event: ev.ToolCallReady) -> None:
        part = self._tool(event.tool_call_id, event.tool_name)
        part.update({"state": "input-available", "input": event.args})

    def _on_approval_requested(self, event: ev.ApprovalRequested) -> None:
        part = self._tool(event.tool_call_id, event.tool_name)
        part.update({"state": "approval-requested", "approval": {"id": event.approval_id}})

    def _on_approval_resolved(self, event: ev.ApprovalResolved) -> None:
        part = self._tool(event.tool_call_id, event.tool_name)
        asked = part.get("approval")
        approval: ToolApproval = asked.copy() if asked is not None else {"id": ""}
        approval["approved"] = event.approved
        if event.reason:
            approval["reason"] = event.reason
        part.update({"state": "approval-responded", "approval": approval})
        if not event.approved:
            part["state"] = "output-denied"

    def _on_tool_result(self, event: ev.ToolResult) -> None:
        part = self._tool(event.tool_call_id, event.tool_name)
        part.update({"state": "output-available", "output": event.result})

    def _on_tool_failed(self, event: ev.ToolFailed) -> None:
        part = self._tool(event.tool_call_id, event.tool_name)
        part["state"] = "output-denied" if event.denied else "output-error"
        part["errorText"] = event.error

    def _on_step_limit_reached(self, event: ev.StepLimitReached) -> None:
        self._join()
        self._open = None
        self._parts.append(
            {"type": "data-notice", "data": {"code": "max_steps", "message": event.message}}
        )

    @property
    def text(self) -> str:
        return text_of(self.parts)
