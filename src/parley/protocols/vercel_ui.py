"""The Vercel AI SDK UI message stream (``x-vercel-ai-ui-message-stream: v1``), for ``useChat``.

Each chunk is ``data: <json>`` with no ``id:`` or ``event:`` line, and the stream ends with
``data: [DONE]``. Clients before ai@5.0.217 / ai@6.0.231 validate every chunk with strict
objects: one unknown key fails the whole request. So by default only the keys every 5.x/6.x
client accepts are sent (protocols.md 1.8), and a request may name its client's version in the
``X-Parley-AI-SDK`` header (``5.0.92``, ``6``, ``6.0.0``…) to unlock more:

- ``>= 5.0.92``: ``finish.finishReason``;
- ``>= 6``: tool approvals as ``tool-approval-request {approvalId, toolCallId}`` and denials as
  ``tool-output-denied``.

Without the v6 hint an approval cannot be expressed in the protocol itself: it is sent as a
``data-tool-approval`` part (``id`` = approval id, ``data`` = ``{approvalId, toolCallId, toolName,
input, runId, expiresAt, status}``; ``status`` goes from ``pending`` to ``approved``/``denied``),
and a denial as ``tool-output-error``. Elicitations are ``data-elicitation`` parts, tool progress
is a transient ``data-tool-progress`` part. parley's tools are ``dynamic: true``. The ``start``
chunk always carries parley's assistant message id, so a continuation after an approval appends
to the same message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sse_starlette import ServerSentEvent

from parley.chat import events as ev
from parley.protocols.base import Encoder, Frames, sse
from parley.wire import compact

HINT_HEADER = "X-Parley-AI-SDK"

FINISH_REASONS = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool-calls",
    "cancelled": "other",
    "awaiting_input": "tool-calls",
    "max_steps": "other",
}


@dataclass(frozen=True)
class Features:
    """What the client's AI SDK version accepts beyond the safe subset."""

    finish_reason: bool = False
    approvals: bool = False

    @classmethod
    def from_hint(cls, hint: str | None) -> Features:
        """Features for a version hint such as ``6``, ``6.0.0`` or ``5.0.92`` (else the safe set)."""
        version = _version(hint)
        if version is None:
            return cls()
        return cls(finish_reason=version >= (5, 0, 92), approvals=version >= (6, 0, 0))


def _version(hint: str | None) -> tuple[int, int, int] | None:
    if not hint:
        return None
    numbers = hint.strip().lstrip("v").split(".")
    try:
        parts = [int(n) for n in numbers[:3]]
    except ValueError:
        return None
    parts += [0] * (3 - len(parts))
    return parts[0], parts[1], parts[2]


def approval_data(
    *,
    approval_id: str,
    tool_call_id: str,
    tool_name: str,
    args: dict[str, Any],
    run_id: str | None,
    expires_at: str,
) -> dict[str, Any]:
    """The ``data`` of a ``data-tool-approval`` part (clients without v6 approvals)."""
    return {
        "approvalId": approval_id,
        "toolCallId": tool_call_id,
        "toolName": tool_name,
        "input": args,
        "runId": run_id,
        "expiresAt": expires_at,
        "status": "pending",
    }


def elicitation_data(event: ev.ElicitationRequested, run_id: str | None) -> dict[str, Any]:
    """The ``data`` of a ``data-elicitation`` part: a server's question, ``pending``."""
    return {
        "elicitationId": event.elicitation_id,
        "runId": run_id,
        "toolCallId": event.tool_call_id,
        "server": event.server,
        "message": event.message,
        "requestedSchema": event.requested_schema,
        "expiresAt": event.expires_at,
        "status": "pending",
    }


def chunk(kind: str, **fields: Any) -> ServerSentEvent:
    data = compact({"type": kind, **fields})
    return sse(data)


class VercelUIStream(Encoder):
    """Engine events to UI message chunks. One instance per HTTP response."""

    def __init__(
        self,
        *,
        message_id: str,
        run_id: str | None = None,
        session_id: str | None = None,
        features: Features | None = None,
        approvals: list[dict[str, Any]] | None = None,
    ) -> None:
        """``approvals``: the ``data-tool-approval`` data of approvals asked in an earlier
        response, so that a continuation can mark them answered."""
        self.message_id = message_id
        self.run_id = run_id
        self.session_id = session_id
        self.features = features or Features()
        self._step = "none"  # none | open | ending (the model step ended; tool outputs may follow)
        self._text: str | None = None
        self._reasoning: str | None = None
        self._parts = 0
        self._ended = False
        self._suspended = False
        self._usage = [0, 0]
        self._approvals = {a["toolCallId"]: a for a in approvals or []}
        self._elicitations: dict[str, dict[str, Any]] = {}

    @property
    def headers(self) -> dict[str, str]:
        headers = {
            "Cache-Control": "no-cache",
            "Connection": "keep-alive",
            "X-Vercel-AI-UI-Message-Stream": "v1",
            "X-Accel-Buffering": "no",
        }
        if self.run_id:
            headers["X-Run-Id"] = self.run_id
        if self.session_id:
            headers["X-Chat-Session-Id"] = self.session_id
        return headers

    def before_stream(self) -> Frames:
        return [chunk("start", messageId=self.message_id)]

    def after_stream(self) -> Frames:
        frames = [] if self._ended else self._finish("tool-calls" if self._suspended else "other")
        return [*frames, sse("[DONE]")]

    def error_frames(self, code: str, message: str) -> Frames:
        self._ended = True
        return [*self._close_step(), chunk("error", errorText=message)]

    # the event mapping ---------------------------------------------------------------

    def encode(self, seq: int, event: ev.EngineEvent) -> Frames:
        match event:
            case ev.TextDelta() | ev.ReasoningDelta():
                return self._delta(event)
            case ev.ToolCallStarted():
                return [
                    *self._in_step(),
                    *self._close_parts(),
                    chunk(
                        "tool-input-start",
                        toolCallId=event.tool_call_id,
                        toolName=event.tool_name,
                        dynamic=True,
                    ),
                ]
            case ev.ToolCallArgsDelta():
                return [
                    chunk(
                        "tool-input-delta",
                        toolCallId=event.tool_call_id,
                        inputTextDelta=event.delta,
                    )
                ]
            case ev.ToolCallReady():
                return [
                    *self._in_step(),
                    *self._close_parts(),
                    chunk(
                        "tool-input-available",
                        toolCallId=event.tool_call_id,
                        toolName=event.tool_name,
                        input=event.args,
                        dynamic=True,
                    ),
                ]
            case ev.StepFinished():
                self._step = "ending" if self._step != "none" else "none"
                return self._close_parts()
            case ev.Usage():
                self._usage[0] += event.prompt_tokens
                self._usage[1] += event.completion_tokens
                return []
            case ev.StepLimitReached():
                return [chunk("data-notice", data={"code": "max_steps", "message": event.message})]
            case ev.RunFinished():
                return self._finish(FINISH_REASONS.get(event.finish_reason, "other"))
            case ev.RunSuspended():
                self._suspended = True
                return self._close_step()
            case ev.RunFailed():
                return self.error_frames(event.code, event.message)
        return self._tools(event)

    def _tools(self, event: ev.EngineEvent) -> Frames:
        match event:
            case ev.ApprovalRequested():
                return self._approval_requested(event)
            case ev.ApprovalResolved():
                return self._approval_resolved(event)
            case ev.ToolResult():
                return [
                    chunk(
                        "tool-output-available",
                        toolCallId=event.tool_call_id,
                        output=event.result,
                        dynamic=True,
                    )
                ]
            case ev.ToolFailed():
                if event.denied and self.features.approvals:
                    return [chunk("tool-output-denied", toolCallId=event.tool_call_id)]
                return [
                    chunk(
                        "tool-output-error",
                        toolCallId=event.tool_call_id,
                        errorText=event.error,
                        dynamic=True,
                    )
                ]
            case ev.ToolProgress():
                data = {
                    "toolCallId": event.tool_call_id,
                    "toolName": event.tool_name,
                    "message": event.message,
                    "progress": event.progress,
                    "total": event.total,
                }
                ident = event.tool_call_id or "queue"
                return [chunk("data-tool-progress", id=ident, data=data, transient=True)]
        return self._others(event)

    def _others(self, event: ev.EngineEvent) -> Frames:
        match event:
            case ev.ElicitationRequested():
                data = elicitation_data(event, self.run_id)
                self._elicitations[event.elicitation_id] = data
                return [chunk("data-elicitation", id=event.elicitation_id, data=data)]
            case ev.ElicitationResolved():
                data = {**self._elicitations.get(event.elicitation_id, {}), "status": event.action}
                data.setdefault("elicitationId", event.elicitation_id)
                return [chunk("data-elicitation", id=event.elicitation_id, data=data)]
            case ev.RunStarted() if event.side_effects:
                return [chunk("data-side-effects", id="side-effects", data=event.side_effects)]
        return []

    # approvals ------------------------------------------------------------------------

    def _approval_requested(self, event: ev.ApprovalRequested) -> Frames:
        if self.features.approvals:
            return [
                chunk(
                    "tool-approval-request",
                    approvalId=event.approval_id,
                    toolCallId=event.tool_call_id,
                )
            ]
        data = approval_data(
            approval_id=event.approval_id,
            tool_call_id=event.tool_call_id,
            tool_name=event.tool_name,
            args=event.args,
            run_id=self.run_id,
            expires_at=event.expires_at,
        )
        self._approvals[event.tool_call_id] = data
        return [chunk("data-tool-approval", id=event.approval_id, data=data)]

    def _approval_resolved(self, event: ev.ApprovalResolved) -> Frames:
        pending = self._approvals.get(event.tool_call_id)
        if self.features.approvals or pending is None:
            return []
        data = {**pending, "status": "approved" if event.approved else "denied"}
        if event.reason:
            data["reason"] = event.reason
        return [chunk("data-tool-approval", id=pending["approvalId"], data=data)]

    # text, reasoning and steps --------------------------------------------------------

    def _delta(self, event: ev.TextDelta | ev.ReasoningDelta) -> Frames:
        kind = "text" if isinstance(event, ev.TextDelta) else "reasoning"
        frames = self._in_step()
        current = self._text if kind == "text" else self._reasoning
        if current is None:
            frames += self._close_parts()
            self._parts += 1
            current = f"{kind}_{self._parts}"
            if kind == "text":
                self._text = current
            else:
                self._reasoning = current
            frames.append(chunk(f"{kind}-start", id=current))
        frames.append(chunk(f"{kind}-delta", id=current, delta=event.content))
        return frames

    def _close_parts(self) -> Frames:
        frames = []
        if self._reasoning is not None:
            frames.append(chunk("reasoning-end", id=self._reasoning))
            self._reasoning = None
        if self._text is not None:
            frames.append(chunk("text-end", id=self._text))
            self._text = None
        return frames

    def _in_step(self) -> Frames:
        """Open a step for model output, closing the previous one first."""
        if self._step == "open":
            return []
        frames = [chunk("finish-step")] if self._step == "ending" else []
        self._step = "open"
        return [*frames, chunk("start-step")]

    def _close_step(self) -> Frames:
        frames = self._close_parts()
        if self._step != "none":
            frames.append(chunk("finish-step"))
        self._step = "none"
        return frames

    def _finish(self, reason: str) -> Frames:
        """The end of this response: a finished run, or a run now waiting for a person."""
        self._ended = True
        fields: dict[str, Any] = {}
        if self.features.finish_reason:
            fields["finishReason"] = reason
        prompt, completion = self._usage
        if prompt or completion:
            usage = {"inputTokens": prompt, "outputTokens": completion}
            fields["messageMetadata"] = {"usage": {**usage, "totalTokens": prompt + completion}}
        return [*self._close_step(), chunk("finish", **fields)]
