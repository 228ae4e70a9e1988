"""AG-UI: engine events as AG-UI events, stored messages as AG-UI messages.

Every frame is ``data: <event>`` where the event is one of ``ag_ui.core``'s models written as
``ag_ui.encoder.EventEncoder`` writes it (``model_dump_json(by_alias=True)``: camelCase keys,
optional fields without a value left out). A response is one AG-UI run:

- ``RUN_STARTED`` (the client's ``threadId`` and ``runId``; ``metadata.parley`` names parley's
  run, conversation and message), then ``MESSAGES_SNAPSHOT`` when the route has one;
- text as ``TEXT_MESSAGE_START/CONTENT/END`` (the message id is parley's assistant message id,
  so the text of one reply builds one client message), reasoning as ``REASONING_*``;
- every tool call as ``TOOL_CALL_START/ARGS/END`` (``parentMessageId`` = that message), and the
  result of a tool parley ran as ``TOOL_CALL_RESULT`` (a failure or denial: its text as the
  content, ``metadata.parley.status`` ``"error"`` or ``"denied"``);
- the end: ``RUN_FINISHED`` with ``outcome`` ``success`` (``pendingToolCallIds`` names the
  client's own tools the model called), ``cancelled``, or ``interrupt`` (tool approvals, see
  :func:`approval_interrupt`), with ``usage``; or ``RUN_ERROR {message, code}``.

A question of an MCP server (elicitation) is a ``CUSTOM`` event ``parley.elicitation``, to be
answered on ``POST /api/runs/{run_id}/elicitations/{elicitation_id}``; the stream waits for it.
parley keeps no agent state: no ``STATE_*`` event is sent.
"""

from __future__ import annotations

import json
from typing import Any

from ag_ui.core import (
    AssistantMessage,
    BaseEvent,
    CustomEvent,
    FunctionCall,
    Interrupt,
    Message,
    MessagesSnapshotEvent,
    ReasoningEndEvent,
    ReasoningMessageContentEvent,
    ReasoningMessageEndEvent,
    ReasoningMessageStartEvent,
    ReasoningStartEvent,
    RunErrorEvent,
    RunFinishedCancelledOutcome,
    RunFinishedEvent,
    RunFinishedInterruptOutcome,
    RunFinishedSuccessOutcome,
    RunStartedEvent,
    TextMessageContentEvent,
    TextMessageEndEvent,
    TextMessageStartEvent,
    TokenUsage,
    ToolCall,
    ToolCallArgsEvent,
    ToolCallEndEvent,
    ToolCallResultEvent,
    ToolCallStartEvent,
    ToolMessage,
    UserMessage,
)
from ag_ui.encoder import EventEncoder
from sse_starlette import ServerSentEvent

from parley.chat import events as ev
from parley.protocols.base import Encoder, Frames, sse
from parley.store.values import Message as StoredMessage
from parley.wire import compact

APPROVAL_REASON = "tool_approval"
APPROVAL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"approved": {"type": "boolean"}, "reason": {"type": "string"}},
    "required": ["approved"],
}


def frame(event: BaseEvent) -> ServerSentEvent:
    return sse(event.model_dump_json(by_alias=True))


def approval_interrupt(
    *, approval_id: str, tool_call_id: str, tool_name: str, args: Any, expires_at: str | None
) -> Interrupt:
    """A tool approval as an AG-UI interrupt: answered by the next input's ``resume`` entry
    ``{interruptId, status: "resolved", payload: {approved, reason?}}`` (``"cancelled"`` denies)."""
    return Interrupt(
        id=approval_id,
        reason=APPROVAL_REASON,
        message=f"Allow the tool {tool_name} to run with {compact(args)}?",
        tool_call_id=tool_call_id,
        response_schema=APPROVAL_SCHEMA,
        expires_at=expires_at,
        metadata={"parley": {"toolName": tool_name, "args": args}},
    )


def tool_content(result: Any) -> str:
    return result if isinstance(result, str) else compact(result)


class AGUIStream(Encoder):
    """Engine events to AG-UI events. One instance per HTTP response (one AG-UI run)."""

    content_type = EventEncoder().get_content_type()

    def __init__(
        self,
        *,
        thread_id: str,
        run_id: str,
        parley_run_id: str,
        conversation_id: str,
        message_id: str,
        snapshot: list[Message] | None = None,
        interrupts: list[Interrupt] | None = None,
    ) -> None:
        """``interrupts``: approvals still open from an earlier response (a resume that did not
        answer them all): the run ends on them at once."""
        self.thread_id = thread_id
        self.run_id = run_id
        self.parley_run_id = parley_run_id
        self.conversation_id = conversation_id
        self.message_id = message_id
        self.snapshot = snapshot
        self._interrupts = {i.tool_call_id or i.id: i for i in interrupts or []}
        self._text_open = False
        self._reasoning: str | None = None
        self._reasoning_count = 0
        self._calls: dict[str, bool] = {}  # started calls: whether their arguments were sent
        self._external: list[str] = []
        self._usage = [0, 0]
        self._ended = False

    @property
    def headers(self) -> dict[str, str]:
        return {
            **super().headers,
            "X-Run-Id": self.parley_run_id,
            "X-Chat-Session-Id": self.conversation_id,
        }

    def before_stream(self) -> Frames:
        parley = {
            "runId": self.parley_run_id,
            "conversationId": self.conversation_id,
            "messageId": self.message_id,
        }
        started = RunStartedEvent(
            thread_id=self.thread_id, run_id=self.run_id, metadata={"parley": parley}
        )
        frames = [frame(started)]
        if self.snapshot is not None:
            frames.append(frame(MessagesSnapshotEvent(messages=self.snapshot)))
        if self._interrupts:
            frames += self._end_interrupted(list(self._interrupts))
        return frames

    def after_stream(self) -> Frames:
        if self._ended:
            return []
        return self.error_frames("ERR_INTERRUPTED", "the stream ended before the run did")

    def error_frames(self, code: str, message: str) -> Frames:
        self._ended = True
        return [*self._close(), frame(RunErrorEvent(message=message, code=code))]

    # the event mapping -------------------------------------------------------------------

    def encode(self, seq: int, event: ev.EngineEvent) -> Frames:
        if self._ended:
            return []
        match event:
            case ev.TextDelta():
                return self._text(event.content)
            case ev.ReasoningDelta():
                return self._reason(event.content)
            case ev.ToolCallStarted():
                return self._call_started(event.tool_call_id, event.tool_name)
            case ev.ToolCallArgsDelta() if event.tool_call_id in self._calls:
                self._calls[event.tool_call_id] = True
                return [
                    frame(ToolCallArgsEvent(tool_call_id=event.tool_call_id, delta=event.delta))
                ]
            case ev.ToolCallReady():
                return self._call_ready(event)
            case ev.ApprovalRequested():
                self._interrupts[event.tool_call_id] = approval_interrupt(
                    approval_id=event.approval_id,
                    tool_call_id=event.tool_call_id,
                    tool_name=event.tool_name,
                    args=event.args,
                    expires_at=event.expires_at,
                )
            case ev.ToolResult():
                return self._result(event.tool_call_id, tool_content(event.result), None)
            case ev.ToolFailed():
                status = "denied" if event.denied else "error"
                return self._result(event.tool_call_id, event.error, status)
            case ev.Usage():
                self._usage[0] += event.prompt_tokens
                self._usage[1] += event.completion_tokens
        return self._others(event)

    def _others(self, event: ev.EngineEvent) -> Frames:
        match event:
            case ev.ElicitationRequested():
                value = {
                    "elicitationId": event.elicitation_id,
                    "runId": self.parley_run_id,
                    "toolCallId": event.tool_call_id,
                    "server": event.server,
                    "message": event.message,
                    "requestedSchema": event.requested_schema,
                    "expiresAt": event.expires_at,
                }
                return [frame(CustomEvent(name="parley.elicitation", value=value))]
            case ev.StepFinished():
                return self._close()
            case ev.RunFinished():
                return self._finished(event.finish_reason)
            case ev.RunSuspended():
                return self._end_interrupted(event.waiting_for)
            case ev.RunFailed():
                return self.error_frames(event.code, event.message)
        return []

    # text and reasoning ------------------------------------------------------------------

    def _text(self, delta: str) -> Frames:
        frames = self._close_reasoning()
        if not self._text_open:
            self._text_open = True
            frames.append(
                frame(TextMessageStartEvent(message_id=self.message_id, role="assistant"))
            )
        frames.append(frame(TextMessageContentEvent(message_id=self.message_id, delta=delta)))
        return frames

    def _reason(self, delta: str) -> Frames:
        frames = self._close_text()
        if self._reasoning is None:
            self._reasoning_count += 1
            self._reasoning = f"{self.message_id}:reasoning{self._reasoning_count}"
            frames += [
                frame(ReasoningStartEvent(message_id=self._reasoning)),
                frame(ReasoningMessageStartEvent(message_id=self._reasoning, role="reasoning")),
            ]
        event = ReasoningMessageContentEvent(message_id=self._reasoning, delta=delta)
        return [*frames, frame(event)]

    def _close_text(self) -> Frames:
        if not self._text_open:
            return []
        self._text_open = False
        return [frame(TextMessageEndEvent(message_id=self.message_id))]

    def _close_reasoning(self) -> Frames:
        if self._reasoning is None:
            return []
        ident, self._reasoning = self._reasoning, None
        return [
            frame(ReasoningMessageEndEvent(message_id=ident)),
            frame(ReasoningEndEvent(message_id=ident)),
        ]

    def _close(self) -> Frames:
        return [*self._close_reasoning(), *self._close_text()]

    # tool calls --------------------------------------------------------------------------

    def _call_started(self, tool_call_id: str, tool_name: str) -> Frames:
        self._calls[tool_call_id] = False
        start = ToolCallStartEvent(
            tool_call_id=tool_call_id, tool_call_name=tool_name, parent_message_id=self.message_id
        )
        return [*self._close(), frame(start)]

    def _call_ready(self, event: ev.ToolCallReady) -> Frames:
        frames = []
        if event.tool_call_id not in self._calls:
            frames += self._call_started(event.tool_call_id, event.tool_name)
        if not self._calls[event.tool_call_id]:
            delta = _arguments(event.args)
            frames.append(frame(ToolCallArgsEvent(tool_call_id=event.tool_call_id, delta=delta)))
        self._calls[event.tool_call_id] = True
        self._external.append(event.tool_call_id)  # until parley runs it
        return [*frames, frame(ToolCallEndEvent(tool_call_id=event.tool_call_id))]

    def _result(self, tool_call_id: str, content: str, status: str | None) -> Frames:
        if tool_call_id in self._external:
            self._external.remove(tool_call_id)
        result = ToolCallResultEvent(
            message_id=f"{self.message_id}:{tool_call_id}",
            tool_call_id=tool_call_id,
            content=content,
            role="tool",
            metadata={"parley": {"status": status}} if status else None,
        )
        return [*self._close(), frame(result)]

    # the end -----------------------------------------------------------------------------

    def _usage_entries(self) -> list[TokenUsage] | None:
        prompt, completion = self._usage
        if not prompt and not completion:
            return None
        return [
            TokenUsage(
                input_tokens=prompt, output_tokens=completion, total_tokens=prompt + completion
            )
        ]

    def _finished(self, finish_reason: str) -> Frames:
        self._ended = True
        outcome: RunFinishedSuccessOutcome | RunFinishedCancelledOutcome
        if finish_reason == "cancelled":
            outcome = RunFinishedCancelledOutcome()
        else:
            pending = self._external if finish_reason == "tool_calls" else []
            outcome = RunFinishedSuccessOutcome(pending_tool_call_ids=pending or None)
        return [*self._close(), self._run_finished(outcome)]

    def _end_interrupted(self, waiting_for: list[str]) -> Frames:
        interrupts = [self._interrupts[c] for c in waiting_for if c in self._interrupts]
        if not interrupts:
            return self.error_frames(
                "ERR_CONFLICT", "the run waits for approvals this stream did not see"
            )
        self._ended = True
        outcome = RunFinishedInterruptOutcome(interrupts=interrupts)
        return [*self._close(), self._run_finished(outcome)]

    def _run_finished(
        self,
        outcome: RunFinishedSuccessOutcome
        | RunFinishedCancelledOutcome
        | RunFinishedInterruptOutcome,
    ) -> ServerSentEvent:
        finished = RunFinishedEvent(
            thread_id=self.thread_id,
            run_id=self.run_id,
            outcome=outcome,
            usage=self._usage_entries(),
        )
        return frame(finished)


def _arguments(args: dict[str, Any]) -> str:
    raw = args.get("__invalid_json__")
    return raw if isinstance(raw, str) and len(args) == 1 else compact(args)


# stored messages as AG-UI messages ---------------------------------------------------------


def snapshot(messages: list[StoredMessage]) -> list[Message]:
    """A conversation's branch as AG-UI messages: each assistant message with its text and
    tool calls, followed by a tool message per result; file parts are left out."""
    out: list[Message] = []
    for message in messages:
        text = "".join(str(p.get("text", "")) for p in message.parts if p.get("type") == "text")
        if message.role == "user":
            out.append(UserMessage(id=message.id, content=text))
        elif message.role == "assistant":
            out += _assistant(message, text)
    return out


def _assistant(message: StoredMessage, text: str) -> list[Message]:
    calls = [p for p in message.parts if p["type"] == "dynamic-tool"]
    tool_calls = [
        ToolCall(
            id=str(p["toolCallId"]),
            function=FunctionCall(name=str(p["toolName"]), arguments=json.dumps(p.get("input"))),
        )
        for p in calls
    ]
    out: list[Message] = [
        AssistantMessage(id=message.id, content=text or None, tool_calls=tool_calls or None)
    ]
    for part in calls:
        state = part.get("state")
        if state == "output-available":
            content = tool_content(part.get("output"))
        elif state in ("output-error", "output-denied"):
            content = str(part.get("errorText", ""))
        else:
            continue
        call_id = str(part["toolCallId"])
        out.append(ToolMessage(id=f"{message.id}:{call_id}", tool_call_id=call_id, content=content))
    return out
