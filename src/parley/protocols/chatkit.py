"""The ChatKit server protocol (``openai-chatkit``): parley's conversations and messages as
ChatKit threads and items, and a run's events as ``ThreadStreamEvent``s.

The values are ``chatkit.types``' own models, dumped as ``ChatKitServer`` dumps them (by alias,
``None`` left out, attachments' metadata left out); a stream is ``data: <json>`` lines only.

A message becomes items, in the order of its parts (``step-start`` and ``data-*`` notices
aside); the first item's id is the message's id, the ``k``-th's ``<message id>-<k>``:

================================  ================================================================
parley                            ChatKit
================================  ================================================================
user message                      ``user_message`` (its text; its files as ``file`` attachments)
text (consecutive parts)          ``assistant_message`` with one ``output_text``
reasoning                         ``workflow`` of type ``reasoning`` with one ``thought`` task
a tool parley runs                ``task`` with a ``custom`` task: the tool's name, its result or
                                  error (``progress_update`` "Running …" while it runs)
a tool waiting for approval       ``widget``: a card naming the tool and its arguments, whose
                                  confirm / cancel actions are ``parley.approval`` with payload
                                  ``{tool_call_id, approved}`` (``threads.custom_action``)
a client tool waiting for output  ``client_tool_call`` (``pending``) for the app's
                                  ``onClientTool``; ``threads.add_client_tool_output`` answers it
================================  ================================================================

No ChatKit equivalent: an MCP server's question (elicitation) is a ``notice`` naming the native
route that answers it; the step limit is a ``notice``; usage has no place.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from chatkit.types import (
    AssistantMessageContent,
    AssistantMessageContentPartAdded,
    AssistantMessageContentPartDone,
    AssistantMessageContentPartTextDelta,
    ClientToolCallItem,
    CustomTask,
    ErrorEvent,
    FileAttachment,
    InferenceOptions,
    NoticeEvent,
    Page,
    ProgressUpdateEvent,
    TaskItem,
    ThoughtTask,
    Thread,
    ThreadItem,
    ThreadItemAddedEvent,
    ThreadItemDoneEvent,
    ThreadItemReplacedEvent,
    ThreadItemUpdatedEvent,
    ThreadStreamEvent,
    UserMessageItem,
    UserMessageTextContent,
    WidgetItem,
    Workflow,
    WorkflowItem,
)
from chatkit.widgets import DynamicWidgetRoot
from pydantic import BaseModel, TypeAdapter
from sse_starlette import ServerSentEvent

from parley.chat import events as ev
from parley.chat.messages import DynamicToolUIPart, Part
from parley.protocols.base import Encoder, Frames, sse
from parley.store.values import Conversation, Message, utcnow

APPROVAL_ACTION = "parley.approval"
RESULT_CHARS = 2_000  # of a tool's result shown in its task
ITEM: TypeAdapter[ThreadItem] = TypeAdapter(ThreadItem)


def dump(value: BaseModel) -> str:
    """JSON as ``ChatKitServer._serialize`` writes it."""
    return value.model_dump_json(
        by_alias=True, exclude_none=True, context={"exclude_metadata": True}
    )


def item_id(message_id: str, index: int) -> str:
    return message_id if index == 0 else f"{message_id}-{index}"


def message_of(ident: str) -> str:
    """The id of the message an item id belongs to."""
    return ident.split("-", 1)[0]


def thread_of(convo: Conversation, items: Page[ThreadItem] | None = None) -> Thread:
    status: dict[str, str] = {"type": "active"}
    if convo.status == "archived":
        status = {"type": "closed", "reason": "archived"}
    return Thread.model_validate(
        {
            "id": convo.id,
            "title": convo.title,
            "created_at": convo.created_at,
            "status": status,
            "items": items or Page[ThreadItem](),
        }
    )


# stored messages -----------------------------------------------------------------------------

Slot = tuple[Literal["text", "reasoning", "tool"], list[Part]]


def slots(parts: Sequence[Part]) -> list[Slot]:
    """The parts of an assistant message grouped as its items: consecutive text parts (across
    steps) are one item, consecutive reasoning one, each tool call one."""
    out: list[Slot] = []
    for part in parts:
        kind = part.get("type")
        if kind == "dynamic-tool":
            out.append(("tool", [part]))
        elif kind in ("text", "reasoning"):
            if out and out[-1][0] == kind:
                out[-1][1].append(part)
            else:
                out.append(("text" if kind == "text" else "reasoning", [part]))
    return out


def items_of(message: Message) -> list[ThreadItem]:
    if message.role == "user":
        return [_user_item(message)]
    if message.role != "assistant":
        return []
    pending_client = message.status != "streaming"
    return [
        _slot_item(kind, group, item_id(message.id, k), message, pending_client)
        for k, (kind, group) in enumerate(slots(message.parts))
    ]


def _user_item(message: Message) -> UserMessageItem:
    files = [p for p in message.parts if p.get("type") == "file"]
    attachments = [
        FileAttachment(
            id=f"{message.id}-file-{i}",
            name=str(p.get("filename") or "file"),
            mime_type=str(p.get("mediaType") or "application/octet-stream"),
            thread_id=message.conversation_id,
        )
        for i, p in enumerate(files)
    ]
    return UserMessageItem(
        id=message.id,
        thread_id=message.conversation_id,
        created_at=message.created_at,
        content=[UserMessageTextContent(text=message.text)],
        attachments=list(attachments),
        inference_options=InferenceOptions(),
    )


def _slot_item(
    kind: str, group: list[Part], ident: str, message: Message, pending_client: bool
) -> ThreadItem:
    base = {"id": ident, "thread_id": message.conversation_id, "created_at": message.created_at}
    text = "".join(str(p.get("text", "")) for p in group)
    if kind == "text":
        return assistant_item(base, text)
    if kind == "reasoning":
        return reasoning_item(base, text)
    part = group[0]
    state = part.get("state")
    if state == "approval-requested":
        return approval_item(base, part)
    if state == "input-available" and pending_client:
        return client_call_item(base, part)
    return task_item(base, part)


def assistant_item(base: dict[str, Any], text: str) -> ThreadItem:
    content = [AssistantMessageContent(text=text)] if text else []
    return _item({**base, "type": "assistant_message", "content": content})


def reasoning_item(base: dict[str, Any], text: str) -> ThreadItem:
    workflow = Workflow(type="reasoning", tasks=[ThoughtTask(content=text)])
    return WorkflowItem(**base, workflow=workflow)


def task_item(base: dict[str, Any], part: Part) -> ThreadItem:
    state = part.get("state")
    if state == "output-available":
        content, done = _short(part.get("output")), True
    elif state in ("output-error", "output-denied"):
        content, done = str(part.get("errorText") or state), True
    else:
        content, done = _short(part.get("input")), False
    task = CustomTask(
        title=str(part.get("toolName", "")),
        content=content,
        status_indicator="complete" if done else "loading",
    )
    return TaskItem(**base, task=task)


def client_call_item(base: dict[str, Any], part: Part) -> ThreadItem:
    return ClientToolCallItem(
        **base,
        call_id=str(part.get("toolCallId", "")),
        name=str(part.get("toolName", "")),
        arguments=part.get("input") or {},
    )


def approval_item(base: dict[str, Any], part: Part) -> ThreadItem:
    return approval_widget(
        base, str(part.get("toolCallId", "")), str(part.get("toolName", "")), part.get("input")
    )


def approval_widget(base: dict[str, Any], tool_call_id: str, name: str, args: Any) -> ThreadItem:
    def action(approved: bool) -> dict[str, Any]:
        payload = {"tool_call_id": tool_call_id, "approved": approved}
        return {"type": APPROVAL_ACTION, "payload": payload}

    card = {
        "type": "Card",
        "children": [
            {"type": "Title", "value": f"Allow {name}?"},
            {"type": "Text", "value": _short(args)},
        ],
        "confirm": {"label": "Allow", "action": action(True)},
        "cancel": {"label": "Deny", "action": action(False)},
    }
    widget = DynamicWidgetRoot.model_validate(card)
    return WidgetItem(**base, widget=widget, copy_text=f"Allow {name}?")


def _item(values: dict[str, Any]) -> ThreadItem:
    return ITEM.validate_python(values)


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= RESULT_CHARS else text[:RESULT_CHARS] + "…"


# the stream ----------------------------------------------------------------------------------


@dataclass
class _Open:
    ident: str
    kind: Literal["text", "reasoning"]
    chunks: list[str] = field(default_factory=list)


class ChatKitStream(Encoder):
    """A run's events as ``ThreadStreamEvent``s, after ``preamble`` (``thread.created``, the
    user's item, ``stream_options``). ``parts`` are the message's parts before this response (a
    run continued after an approval): its new items are numbered after them.
    ``client_tools`` are the names of the tools the app runs itself."""

    def __init__(
        self,
        *,
        thread_id: str,
        message_id: str,
        preamble: Sequence[ThreadStreamEvent] = (),
        parts: Sequence[Part] = (),
        client_tools: frozenset[str] = frozenset(),
    ) -> None:
        self.thread_id = thread_id
        self.message_id = message_id
        self.preamble = list(preamble)
        self.client_tools = client_tools
        known = slots(parts)
        self.next_index = len(known)
        self.tools: dict[str, str] = {}
        self.asked: set[str] = set()
        for k, (kind, group) in enumerate(known):
            if kind == "tool":
                call = str(group[0].get("toolCallId"))
                self.tools[call] = item_id(message_id, k)
                if group[0].get("state") == "approval-requested":
                    self.asked.add(call)
        self.open: _Open | None = None

    def before_stream(self) -> Frames:
        return [self._frame(e) for e in self.preamble]

    def after_stream(self) -> Frames:
        return self._close()

    def error_frames(self, code: str, message: str) -> Frames:
        return [
            *self._close(),
            self._frame(ErrorEvent(code="custom", message=message, allow_retry=True)),
        ]

    def encode(self, seq: int, event: ev.EngineEvent) -> Frames:
        if isinstance(event, ev.TextDelta | ev.ReasoningDelta):
            return self._delta(event)
        frames = self._close() if _closes(event) else []
        return frames + [self._frame(e) for e in self._events(event)]

    # text and reasoning

    def _delta(self, event: ev.TextDelta | ev.ReasoningDelta) -> Frames:
        kind: Literal["text", "reasoning"] = (
            "text" if isinstance(event, ev.TextDelta) else "reasoning"
        )
        frames: Frames = []
        if self.open is not None and self.open.kind != kind:
            frames = self._close()
        if self.open is None:
            self.open = _Open(self._allocate(), kind)
            if kind == "text":
                frames += [self._frame(e) for e in self._text_opened(self.open.ident)]
        self.open.chunks.append(event.content)
        if kind == "text":
            update = AssistantMessageContentPartTextDelta(content_index=0, delta=event.content)
            frames.append(
                self._frame(ThreadItemUpdatedEvent(item_id=self.open.ident, update=update))
            )
        return frames

    def _text_opened(self, ident: str) -> list[ThreadStreamEvent]:
        added = ThreadItemAddedEvent(item=assistant_item(self._base(ident), ""))
        part = AssistantMessageContentPartAdded(
            content_index=0, content=AssistantMessageContent(text="")
        )
        return [added, ThreadItemUpdatedEvent(item_id=ident, update=part)]

    def _close(self) -> Frames:
        if self.open is None:
            return []
        opened, self.open = self.open, None
        text = "".join(opened.chunks)
        base = self._base(opened.ident)
        if opened.kind == "reasoning":
            return [self._frame(ThreadItemDoneEvent(item=reasoning_item(base, text)))]
        done = AssistantMessageContentPartDone(
            content_index=0, content=AssistantMessageContent(text=text)
        )
        return [
            self._frame(ThreadItemUpdatedEvent(item_id=opened.ident, update=done)),
            self._frame(ThreadItemDoneEvent(item=assistant_item(base, text))),
        ]

    # tools and the rest

    def _events(self, event: ev.EngineEvent) -> list[ThreadStreamEvent]:
        if isinstance(event, ev.ToolCallReady):
            return self._tool_ready(event)
        if isinstance(event, ev.ApprovalRequested):
            base = self._base(self._tool_item(event.tool_call_id))
            self.asked.add(event.tool_call_id)
            widget = approval_widget(base, event.tool_call_id, event.tool_name, event.args)
            return [ThreadItemDoneEvent(item=widget)]
        if isinstance(event, ev.ToolResult | ev.ToolFailed):
            return [self._tool_done(event)]
        if isinstance(event, ev.ToolProgress):
            return [ProgressUpdateEvent(text=event.message)]
        if isinstance(event, ev.ElicitationRequested):
            where = f"POST /api/runs/{{run_id}}/elicitations/{event.elicitation_id}"
            return [
                NoticeEvent(level="info", title=event.server, message=f"{event.message} ({where})")
            ]
        if isinstance(event, ev.StepLimitReached):
            return [NoticeEvent(level="warning", message=event.message)]
        if isinstance(event, ev.RunFailed):
            return [ErrorEvent(code="custom", message=event.message, allow_retry=True)]
        return []

    def _tool_ready(self, event: ev.ToolCallReady) -> list[ThreadStreamEvent]:
        ident = self._tool_item(event.tool_call_id)
        if event.tool_name in self.client_tools:
            part: DynamicToolUIPart = {
                "type": "dynamic-tool",
                "toolCallId": event.tool_call_id,
                "toolName": event.tool_name,
                "state": "input-available",
                "input": event.args,
            }
            return [ThreadItemDoneEvent(item=client_call_item(self._base(ident), part))]
        return [ProgressUpdateEvent(icon="bolt", text=f"Running {event.tool_name}…")]

    def _tool_done(self, event: ev.ToolResult | ev.ToolFailed) -> ThreadStreamEvent:
        ident = self._tool_item(event.tool_call_id)
        part: DynamicToolUIPart = {
            "type": "dynamic-tool",
            "toolCallId": event.tool_call_id,
            "toolName": event.tool_name,
            "state": "output-error",
            "input": None,
        }
        if isinstance(event, ev.ToolResult):
            part.update({"state": "output-available", "output": event.result})
        else:
            part["errorText"] = event.error
        item = task_item(self._base(ident), part)
        if event.tool_call_id in self.asked:
            return ThreadItemReplacedEvent(item=item)
        return ThreadItemDoneEvent(item=item)

    def _tool_item(self, tool_call_id: str) -> str:
        if tool_call_id not in self.tools:
            self.tools[tool_call_id] = self._allocate()
        return self.tools[tool_call_id]

    def _allocate(self) -> str:
        ident = item_id(self.message_id, self.next_index)
        self.next_index += 1
        return ident

    def _base(self, ident: str) -> dict[str, Any]:
        return {"id": ident, "thread_id": self.thread_id, "created_at": _now()}

    @staticmethod
    def _frame(event: BaseModel) -> ServerSentEvent:
        return sse(dump(event))


def _closes(event: ev.EngineEvent) -> bool:
    """Whether ``event`` ends the open text or reasoning item."""
    return not isinstance(event, ev.Usage | ev.StepFinished | ev.RunStarted | ev.ToolCallArgsDelta)


def _now() -> datetime:
    return utcnow()
