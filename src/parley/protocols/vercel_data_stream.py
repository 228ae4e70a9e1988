"""The ai@4 Data Stream protocol (``X-Vercel-AI-Data-Stream: v1``), for ai@4 ``useChat``.

Each part is one line, ``<code>:<json>``, in ``text/plain`` (protocols.md 1.10). The client
splits lines at the first ``:`` and refuses an unknown code ("Invalid code"), so nothing else
is written: no ``[DONE]``, no SSE comment as a heartbeat. The stream ends when the connection
closes.

- A model step opens with ``f:{messageId}`` (parley's assistant message id, on every step: the
  client's message takes it), then text ``0:``, reasoning ``g:``, tool calls as ``b:``/``c:``
  while the model writes their arguments and ``9:`` once they are whole. The step's
  ``e:{finishReason, usage, isContinued}`` follows its tool results (``a:``), as ``streamText``
  orders them.
- A failed or denied tool is an ``a:`` whose ``result`` is ``{"error": text}``: v4 has no part
  for it, and ``3:`` would end the client's chat.
- The response ends with ``d:{finishReason, usage}``, its token usage summed. An error is
  ``3:"ERR_…: message"`` (the code first), then ``e:`` and ``d:`` with ``finishReason: "error"``.

What v4 has no part for goes in data parts, ``2:[{type, …}]`` (``useChat``'s ``data``):
``tool-approval`` (the data of a v5 ``data-tool-approval`` part; ``status`` goes from
``pending`` to ``approved``/``denied``, with who answered in ``by``: a user id, or ``timeout``
for an approval nobody answered in time), ``elicitation``, ``notice`` (the step limit) and
``side-effects``. Tool progress is not sent: data parts are kept, never transient.
"""

from __future__ import annotations

from typing import Any

from sse_starlette import ServerSentEvent

from parley.chat import events as ev
from parley.protocols.base import Encoder, Frames
from parley.protocols.vercel_ui import approval_data, elicitation_data
from parley.wire import compact

FINISH_REASONS = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool-calls",
    "content_filter": "content-filter",
    "cancelled": "other",
    "awaiting_input": "tool-calls",
    "max_steps": "tool-calls",
}


class StreamPart(ServerSentEvent):
    """One line of the data stream, ``<code>:<json>``, written where SSE doors write a frame."""

    def __init__(self, code: str, value: Any) -> None:
        super().__init__(data=f"{code}:{compact(value)}")

    def encode(self) -> bytes:
        return f"{self.data}\n".encode()


def data_part(kind: str, fields: dict[str, Any]) -> StreamPart:
    return StreamPart("2", [{"type": kind, **fields}])


def usage(prompt: int, completion: int) -> dict[str, int]:
    return {"promptTokens": prompt, "completionTokens": completion}


class VercelDataStream(Encoder):
    """Engine events to data stream parts. One instance per HTTP response."""

    content_type = "text/plain; charset=utf-8"

    def __init__(
        self,
        *,
        message_id: str,
        run_id: str | None = None,
        session_id: str | None = None,
        approvals: list[dict[str, Any]] | None = None,
    ) -> None:
        """``approvals``: the ``tool-approval`` data of approvals asked in an earlier response,
        so that a continuation can mark them answered."""
        self.message_id = message_id
        self.run_id = run_id
        self.session_id = session_id
        self._step = "none"  # none | open | ending (the model step ended; tool results follow)
        self._step_reason = "other"
        self._step_usage = [0, 0]
        self._usage = [0, 0]
        self._ended = False
        self._suspended = False
        self._approvals = {a["toolCallId"]: a for a in approvals or []}
        self._elicitations: dict[str, dict[str, Any]] = {}

    @property
    def headers(self) -> dict[str, str]:
        headers = {**super().headers, "X-Vercel-AI-Data-Stream": "v1"}
        if self.run_id:
            headers["X-Run-Id"] = self.run_id
        if self.session_id:
            headers["X-Chat-Session-Id"] = self.session_id
        return headers

    def after_stream(self) -> Frames:
        if self._ended:
            return []
        return self._finish("tool-calls" if self._suspended else "other")

    def error_frames(self, code: str, message: str) -> Frames:
        return [StreamPart("3", f"{code}: {message}"), *self._finish("error")]

    # the event mapping ---------------------------------------------------------------

    def encode(self, seq: int, event: ev.EngineEvent) -> Frames:
        match event:
            case ev.TextDelta():
                return [*self._in_step(), StreamPart("0", event.content)]
            case ev.ReasoningDelta():
                return [*self._in_step(), StreamPart("g", event.content)]
            case ev.ToolCallStarted():
                start = {"toolCallId": event.tool_call_id, "toolName": event.tool_name}
                return [*self._in_step(), StreamPart("b", start)]
            case ev.ToolCallArgsDelta():
                delta = {"toolCallId": event.tool_call_id, "argsTextDelta": event.delta}
                return [StreamPart("c", delta)]
            case ev.ToolCallReady():
                call = {"toolCallId": event.tool_call_id, "toolName": event.tool_name}
                return [*self._in_step(), StreamPart("9", {**call, "args": event.args})]
            case ev.ToolResult():
                return [StreamPart("a", {"toolCallId": event.tool_call_id, "result": event.result})]
            case ev.ToolFailed():
                result = {"error": event.error}
                return [StreamPart("a", {"toolCallId": event.tool_call_id, "result": result})]
            case ev.StepFinished():
                if self._step == "open":
                    self._step = "ending"
                    self._step_reason = FINISH_REASONS.get(event.finish_reason, "other")
                return []
            case ev.Usage():
                for total in (self._step_usage, self._usage):
                    total[0] += event.prompt_tokens
                    total[1] += event.completion_tokens
                return []
        return self._ends(event)

    def _ends(self, event: ev.EngineEvent) -> Frames:
        match event:
            case ev.RunFinished():
                return self._finish(FINISH_REASONS.get(event.finish_reason, "other"))
            case ev.RunSuspended():
                self._suspended = True  # the response ends here, unless this is a replay
                return []
            case ev.RunFailed():
                return self.error_frames(event.code, event.message)
            case ev.StepLimitReached():
                return [data_part("notice", {"code": "max_steps", "message": event.message})]
            case ev.RunStarted() if event.side_effects:
                return [data_part("side-effects", {"sideEffects": event.side_effects})]
        return self._questions(event)

    # approvals and elicitations -------------------------------------------------------

    def _questions(self, event: ev.EngineEvent) -> Frames:
        match event:
            case ev.ApprovalRequested():
                asked = approval_data(
                    approval_id=event.approval_id,
                    tool_call_id=event.tool_call_id,
                    tool_name=event.tool_name,
                    args=event.args,
                    run_id=self.run_id,
                    expires_at=event.expires_at,
                )
                self._approvals[event.tool_call_id] = asked
                return [data_part("tool-approval", asked)]
            case ev.ApprovalResolved() if event.tool_call_id in self._approvals:
                answered = {
                    **self._approvals[event.tool_call_id],
                    "status": "approved" if event.approved else "denied",
                }
                if event.reason:
                    answered["reason"] = event.reason
                if event.by:
                    answered["by"] = event.by
                return [data_part("tool-approval", answered)]
            case ev.ElicitationRequested():
                question = elicitation_data(event, self.run_id)
                self._elicitations[event.elicitation_id] = question
                return [data_part("elicitation", question)]
            case ev.ElicitationResolved():
                known = self._elicitations.get(event.elicitation_id, {})
                status = {"elicitationId": event.elicitation_id, **known, "status": event.action}
                return [data_part("elicitation", status)]
        return []

    # steps ----------------------------------------------------------------------------

    def _in_step(self) -> Frames:
        """Open a step for model output, closing the previous one first."""
        if self._step == "open":
            return []
        frames = self._close_step("other")
        self._step = "open"
        self._step_usage = [0, 0]
        return [*frames, StreamPart("f", {"messageId": self.message_id})]

    def _close_step(self, reason: str) -> Frames:
        """``e:`` for the step in progress: its own finish reason once the model ended it."""
        if self._step == "none":
            return []
        if self._step == "ending":
            reason = self._step_reason
        self._step = "none"
        end = {"finishReason": reason, "usage": usage(*self._step_usage), "isContinued": False}
        return [StreamPart("e", end)]

    def _finish(self, reason: str) -> Frames:
        """The end of this response: a finished or failed run, or one waiting for a person."""
        self._ended = True
        end = {"finishReason": reason, "usage": usage(*self._usage)}
        return [*self._close_step(reason), StreamPart("d", end)]
