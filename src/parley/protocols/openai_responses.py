"""The OpenAI Responses API: a run's events as one ``response`` object and as the stream of
``response.*`` events, and a request's ``input`` items as parley message parts.

A response is a parley run: ``resp_<x>`` is run ``run_<x>``, its text is one ``message`` output
item ``msg_<x>``, and each call to one of the client's own tools (``external``) a
``function_call`` item. Tools parley runs itself stay inside parley, as on the Chat Completions
door. Stream events are ``event: <type>`` plus ``data:`` JSON carrying that ``type`` and an
increasing ``sequence_number``; the stream ends after ``response.completed``,
``response.incomplete`` or ``response.failed``, with no ``[DONE]`` (protocols.md section 3).
"""

from __future__ import annotations

import json
import mimetypes
from dataclasses import dataclass, field
from typing import Any

from parley.chat import events as ev
from parley.chat.files import file_part
from parley.chat.messages import Part
from parley.errors import ValidationFailed
from parley.protocols.base import Encoder, Frames, sse
from parley.protocols.openai_chat import ClientHistory, suspended_message
from parley.wire import LONE_SURROGATE, compact, holds_lone_surrogate

Payload = dict[str, Any]

# finish reason -> (status, incomplete_details.reason)
OUTCOMES: dict[str, tuple[str, str | None]] = {
    "stop": ("completed", None),
    "tool_calls": ("completed", None),
    "length": ("incomplete", "max_output_tokens"),
    "max_steps": ("incomplete", "max_output_tokens"),
    "awaiting_input": ("incomplete", None),
    "cancelled": ("cancelled", None),
}
TERMINAL_EVENTS = {
    "completed": "response.completed",
    "incomplete": "response.incomplete",
    "cancelled": "response.incomplete",
    "failed": "response.failed",
}


def response_id(run_id: str) -> str:
    return "resp_" + run_id.removeprefix("run_")


def run_id_of(response: str) -> str | None:
    """The run a response id names, or None for what is not a response id."""
    suffix = response.removeprefix("resp_")
    return "run_" + suffix if response.startswith("resp_") and suffix else None


def message_item_id(run_id: str) -> str:
    return "msg_" + run_id.removeprefix("run_")


def run_of_item(item_id: str) -> str | None:
    """The run whose message output item ``item_id`` is, or None."""
    suffix = item_id.removeprefix("msg_")
    return "run_" + suffix if item_id.startswith("msg_") and suffix else None


@dataclass
class ResponseMeta:
    """What a response echoes of its request."""

    run_id: str
    model: str
    created_at: int
    instructions: str | None = None
    tools: list[Payload] = field(default_factory=list)
    tool_choice: Any = "auto"
    temperature: float | None = None
    max_output_tokens: int | None = None
    previous_response_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    background: bool = False


class ResponseBuilder:
    """Folds a run's events into a ``response`` object; each fold returns the stream events
    (without their ``sequence_number``) that the event gives rise to."""

    def __init__(self, meta: ResponseMeta, external: frozenset[str] = frozenset()) -> None:
        self.meta = meta
        self.external = external
        self.status = "in_progress"
        self.output: list[Payload] = []
        self.incomplete: str | None = None
        self.error: Payload | None = None
        self._message: int | None = None  # output index of the open message item
        self._calls: dict[str, int] = {}  # open function_call items by tool call id
        self._usage = [0, 0]

    @property
    def id(self) -> str:
        return response_id(self.meta.run_id)

    def fold(self, event: ev.EngineEvent) -> list[Payload]:
        match event:
            case ev.TextDelta():
                return self._text(event.content)
            case ev.ToolCallStarted() if event.tool_name in self.external:
                return self._call_started(event)
            case ev.ToolCallArgsDelta() if event.tool_call_id in self._calls:
                return self._call_delta(self._calls[event.tool_call_id], event.delta)
            case ev.ToolCallReady() if event.tool_call_id in self._calls:
                return self._call_done(event)
            case ev.Usage():
                self._usage[0] += event.prompt_tokens
                self._usage[1] += event.completion_tokens
            case ev.RunFinished():
                if event.total_tokens:
                    self._usage = [event.prompt_tokens, event.completion_tokens]
                self.status, self.incomplete = OUTCOMES.get(
                    event.finish_reason, ("completed", None)
                )
                return [*self._close(), self._terminal()]
            case ev.RunFailed():
                self.status, self.error = "failed", {"code": event.code, "message": event.message}
                return [*self._close(), self._terminal()]
            case ev.RunSuspended():
                return [error_payload("approval_required", suspended_message(event))]
        return []

    def _text(self, delta: str) -> list[Payload]:
        events: list[Payload] = []
        if self._message is None:
            self._message = len(self.output)
            content: list[Payload] = []
            self.output.append(
                {
                    "id": message_item_id(self.meta.run_id),
                    "type": "message",
                    "status": "in_progress",
                    "role": "assistant",
                    "content": content,
                }
            )
            events.append(self._item_event("response.output_item.added", self._message))
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            content.append(part)
            where = self._where(self._message)
            events.append({**where, "type": "response.content_part.added", "part": dict(part)})
        self.output[self._message]["content"][0]["text"] += delta
        where = self._where(self._message)
        events.append(
            {**where, "type": "response.output_text.delta", "delta": delta, "logprobs": []}
        )
        return events

    def _call_started(self, event: ev.ToolCallStarted) -> list[Payload]:
        index = len(self.output)
        self._calls[event.tool_call_id] = index
        self.output.append(
            {
                "id": f"fc_{self.meta.run_id.removeprefix('run_')}_{index}",
                "type": "function_call",
                "status": "in_progress",
                "call_id": event.tool_call_id,
                "name": event.tool_name,
                "arguments": "",
            }
        )
        return [self._item_event("response.output_item.added", index)]

    def _call_delta(self, index: int, delta: str) -> list[Payload]:
        item = self.output[index]
        item["arguments"] += delta
        return [
            {
                "type": "response.function_call_arguments.delta",
                "item_id": item["id"],
                "output_index": index,
                "delta": delta,
            }
        ]

    def _call_done(self, event: ev.ToolCallReady) -> list[Payload]:
        index = self._calls.pop(event.tool_call_id)
        item = self.output[index]
        events = [] if item["arguments"] else self._call_delta(index, arguments_text(event.args))
        item["status"] = "completed"
        done = {
            "type": "response.function_call_arguments.done",
            "item_id": item["id"],
            "output_index": index,
            "name": item["name"],
            "arguments": item["arguments"],
        }
        return [*events, done, self._item_event("response.output_item.done", index)]

    def _close(self) -> list[Payload]:
        """End the open items: the message's text is final; a call cut short is incomplete."""
        events: list[Payload] = []
        for index in sorted(self._calls.values()):
            self.output[index]["status"] = "incomplete"
            events.append(self._item_event("response.output_item.done", index))
        self._calls.clear()
        if self._message is not None:
            index, self._message = self._message, None
            item = self.output[index]
            item["status"] = "completed" if self.status == "completed" else "incomplete"
            part = item["content"][0]
            where = self._where(index)
            events.append(
                {**where, "type": "response.output_text.done", "text": part["text"], "logprobs": []}
            )
            events.append({**where, "type": "response.content_part.done", "part": dict(part)})
            events.append(self._item_event("response.output_item.done", index))
        return events

    def _where(self, index: int) -> Payload:
        return {"item_id": self.output[index]["id"], "output_index": index, "content_index": 0}

    def _item_event(self, kind: str, index: int) -> Payload:
        item = json.loads(json.dumps(self.output[index]))  # a copy of the item as it is now
        return {"type": kind, "output_index": index, "item": item}

    def _terminal(self) -> Payload:
        return {"type": TERMINAL_EVENTS[self.status], "response": self.response()}

    def response(self) -> Payload:
        """The ``response`` object as it stands."""
        m = self.meta
        prompt, completion = self._usage
        done = self.status != "in_progress"
        return {
            "id": self.id,
            "object": "response",
            "created_at": m.created_at,
            "status": self.status,
            "background": m.background,
            "error": self.error,
            "incomplete_details": {"reason": self.incomplete} if self.incomplete else None,
            "instructions": m.instructions,
            "max_output_tokens": m.max_output_tokens,
            "metadata": m.metadata,
            "model": m.model,
            "output": json.loads(json.dumps(self.output)),
            "parallel_tool_calls": True,
            "previous_response_id": m.previous_response_id,
            "store": True,
            "temperature": m.temperature,
            "text": {"format": {"type": "text"}},
            "tool_choice": m.tool_choice,
            "tools": m.tools,
            "top_p": None,
            "truncation": "disabled",
            "usage": {
                "input_tokens": prompt,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": completion,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": prompt + completion,
            }
            if done
            else None,
        }


def error_payload(code: str, message: str) -> Payload:
    return {"type": "error", "code": code, "message": message, "param": None}


def arguments_text(args: dict[str, Any]) -> str:
    """A call's arguments as JSON text; arguments that were not JSON (kept under
    ``__invalid_json__``) go back as the model wrote them."""
    raw = args.get("__invalid_json__")
    return raw if isinstance(raw, str) and len(args) == 1 else json.dumps(args)


class ResponseEvents(Encoder):
    """Engine events to ``response.*`` stream events."""

    def __init__(
        self,
        builder: ResponseBuilder,
        *,
        extra_headers: dict[str, str],
        starting_after: int | None = None,
    ) -> None:
        self.builder = builder
        self.extra_headers = extra_headers
        self.starting_after = -1 if starting_after is None else starting_after
        self._sequence = 0

    @property
    def headers(self) -> dict[str, str]:
        return {"Cache-Control": "no-cache", "X-Accel-Buffering": "no", **self.extra_headers}

    def _frames(self, *payloads: Payload) -> Frames:
        """The payloads numbered; those up to ``starting_after`` are numbered and left out."""
        frames: Frames = []
        for payload in payloads:
            payload["sequence_number"] = self._sequence
            self._sequence += 1
            if payload["sequence_number"] > self.starting_after:
                frames.append(sse(compact(payload), event=payload["type"]))
        return frames

    def before_stream(self) -> Frames:
        response = self.builder.response()
        return self._frames(
            {"type": "response.created", "response": response},
            {"type": "response.in_progress", "response": response},
        )

    def encode(self, seq: int, event: ev.EngineEvent) -> Frames:
        return self._frames(*self.builder.fold(event))

    def after_stream(self) -> Frames:
        return []

    def error_frames(self, code: str, message: str) -> Frames:
        return self._frames(error_payload(code, message))


# the request's input items as parley messages -------------------------------------------


@dataclass
class InputHistory(ClientHistory):
    """``ClientHistory`` plus results for calls that are not among the input's items (the
    calls of the ``previous_response_id``)."""

    earlier_outputs: dict[str, Any] = field(default_factory=dict)


def input_history(
    items: str | list[dict[str, Any]],
    instructions: str | None,
    references: dict[str, dict[str, Any]],
) -> InputHistory:
    """``input`` in parley's terms; ``references`` are the items ``item_reference``s name."""
    history = InputHistory()
    system = [instructions or ""]
    for index, item in enumerate(
        [{"role": "user", "content": items}] if isinstance(items, str) else items
    ):
        if item.get("type") == "item_reference":
            item = _referenced(references, item.get("id"), index)
        kind, role = item.get("type", "message"), item.get("role")
        if kind == "message" and role in ("system", "developer"):
            system.append(_text(item.get("content"), index))
        elif kind == "message" and role == "user":
            history.messages.append(("user", _user_parts(item.get("content"), index)))
        elif kind == "message" and role == "assistant":
            _add_assistant(history, {"type": "text", "text": _text(item.get("content"), index)})
        elif kind == "function_call":
            _add_assistant(history, _call_part(item, index))
        elif kind == "function_call_output":
            _fold_output(history, item, index)
        elif kind != "reasoning":
            raise ValidationFailed(f"input[{index}]: item type {kind!r} is not supported")
    history.system = "\n\n".join(s for s in system if s) or None
    if history.messages and history.messages[-1][0] == "user":
        history.user_parts = history.messages.pop()[1]
    return history


def _add_assistant(history: InputHistory, part: Part) -> None:
    """Add to the assistant message the input is building (a new one after a user's); what
    follows tool results is the model's next step."""
    if not history.messages or history.messages[-1][0] != "assistant":
        history.messages.append(("assistant", [{"type": "step-start"}]))
    parts = history.messages[-1][1]
    if parts[-1].get("state") == "output-available":
        parts.append({"type": "step-start"})
    parts.append(part)


def _referenced(references: dict[str, dict[str, Any]], item_id: object, index: int) -> Payload:
    found = references.get(item_id) if isinstance(item_id, str) else None
    if found is None:
        raise ValidationFailed(f"input[{index}]: item_reference {item_id!r} names no item")
    return found


def _text(content: Any, index: int) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, dict) for p in content):
        return "".join(str(p.get("text") or p.get("refusal") or "") for p in content)
    raise ValidationFailed(f"input[{index}].content must be a string or a list of parts")


def _user_parts(content: Any, index: int) -> list[Part]:
    if isinstance(content, str):
        parts: list[Part] = [{"type": "text", "text": content}] if content else []
    elif isinstance(content, list):
        parts = [_user_part(item, index, at) for at, item in enumerate(content)]
    else:
        raise ValidationFailed(f"input[{index}].content must be a string or a list of parts")
    if not parts:
        raise ValidationFailed(f"input[{index}] is empty")
    return parts


def _user_part(item: Any, index: int, at: int) -> Part:
    where = f"input[{index}].content[{at}]"
    kind = item.get("type") if isinstance(item, dict) else None
    if kind == "input_text" and isinstance(item.get("text"), str):
        return {"type": "text", "text": item["text"]}
    if kind == "input_image" and item.get("image_url") is not None:
        url = item["image_url"]
        return file_part(url=url, media_type=_media_type(url, "image/jpeg"), field=where)
    if kind == "input_file" and (item.get("file_data") or item.get("file_url")) is not None:
        url = item.get("file_data") or item.get("file_url")
        media = _media_type(url, "application/octet-stream")
        return file_part(url=url, media_type=media, filename=item.get("filename"), field=where)
    raise ValidationFailed(
        f"{where}: give input_text with text, input_image with image_url, or input_file with "
        "file_data or file_url (uploaded file ids are not supported)"
    )


def _media_type(url: object, default: str) -> str:
    """The media type a data: URL names, else a guess from a link's path."""
    if not isinstance(url, str):
        return default
    if url[:5].lower() == "data:":
        return url[5:].split(",", 1)[0].split(";", 1)[0].strip() or "text/plain"
    guessed, _ = mimetypes.guess_type(url.split("?", 1)[0])
    return guessed or default


def _call_part(item: dict[str, Any], index: int) -> Part:
    values = (item.get("name"), item.get("call_id"), item.get("arguments") or "{}")
    if not all(isinstance(v, str) and v for v in values):
        raise ValidationFailed(f"input[{index}]: a function_call needs name, call_id, arguments")
    name, call_id, arguments = values
    try:
        args = json.loads(str(arguments))
    except json.JSONDecodeError as exc:
        raise ValidationFailed(f"input[{index}]: function_call arguments are not JSON") from exc
    if holds_lone_surrogate(args):
        raise ValidationFailed(f"input[{index}]: function_call arguments: {LONE_SURROGATE}")
    return {
        "type": "dynamic-tool",
        "toolName": str(name),
        "toolCallId": str(call_id),
        "state": "input-available",
        "input": args,
    }


def _fold_output(history: InputHistory, item: dict[str, Any], index: int) -> None:
    call_id, output = item.get("call_id"), item.get("output")
    if not isinstance(call_id, str) or not call_id:
        raise ValidationFailed(f"input[{index}]: a function_call_output needs a call_id")
    text = output if isinstance(output, str) else _text(output, index)
    for role, parts in reversed(history.messages):
        for part in parts if role == "assistant" else ():
            if part["type"] == "dynamic-tool" and part["toolCallId"] == call_id:
                part.update({"state": "output-available", "output": text})
                return
    if any(role == "user" for role, _ in history.messages):
        raise ValidationFailed(
            f"input[{index}]: function_call_output {call_id!r} answers no function_call before it"
        )
    history.earlier_outputs[call_id] = text
