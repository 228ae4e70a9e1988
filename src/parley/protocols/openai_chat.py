"""OpenAI Chat Completions: ``chat.completion.chunk`` streams, whole completions, error bodies,
and the client's ``messages`` array as parley message parts.

Streams carry only ``data:`` lines: openai-python's decoder breaks on a later heartbeat once it
has seen an ``id:`` or ``retry:`` field (protocols.md 2.6). Only calls to the client's own tools
(``external``) are streamed as ``tool_calls``: tools parley runs itself stay inside parley.
"""

from __future__ import annotations

import json
import mimetypes
import time
from dataclasses import dataclass, field
from typing import Any

from sse_starlette import ServerSentEvent

from parley.chat import events as ev
from parley.chat.files import file_part
from parley.chat.messages import Part
from parley.errors import ValidationFailed
from parley.protocols.base import Encoder, Frames, sse
from parley.protocols.reply import Reply
from parley.wire import LONE_SURROGATE, compact, holds_lone_surrogate

FINISH_REASONS = {
    "stop": "stop",
    "length": "length",
    "max_steps": "length",
    "tool_calls": "tool_calls",
}

ERROR_TYPES = {
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "permission_denied"),
    404: ("invalid_request_error", "not_found"),
    409: ("invalid_request_error", "conflict"),
    429: ("requests", "rate_limit_exceeded"),
}


def error_body(
    status: int, message: str, *, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    """``{"error": {message, type, param, code}}``, OpenAI's error shape."""
    kind, default_code = ERROR_TYPES.get(status, ("invalid_request_error", None))
    if status >= 500:
        kind, default_code = "server_error", None
    return {
        "error": {"message": message, "type": kind, "param": param, "code": code or default_code}
    }


def _data(payload: dict[str, Any]) -> ServerSentEvent:
    return sse(compact(payload))


class OpenAIChunks(Encoder):
    """Engine events to ``chat.completion.chunk`` objects."""

    def __init__(
        self,
        *,
        completion_id: str,
        model: str,
        include_usage: bool = False,
        external: frozenset[str] = frozenset(),
        created: int | None = None,
        extra_headers: dict[str, str] | None = None,
    ) -> None:
        self.completion_id = completion_id
        self.model = model
        self.include_usage = include_usage
        self.external = external
        self.created = created if created is not None else int(time.time())
        self.extra_headers = extra_headers or {}
        self._calls: dict[str, int] = {}
        self._usage = [0, 0]

    @property
    def headers(self) -> dict[str, str]:
        return {"Cache-Control": "no-cache", "X-Accel-Buffering": "no", **self.extra_headers}

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> ServerSentEvent:
        return _data(
            {
                "id": self.completion_id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "choices": [
                    {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
                ],
            }
        )

    def before_stream(self) -> Frames:
        return [self._chunk({"role": "assistant", "content": "", "refusal": None})]

    def encode(self, seq: int, event: ev.EngineEvent) -> Frames:
        match event:
            case ev.TextDelta():
                return [self._chunk({"content": event.content})]
            case ev.ToolCallStarted() if event.tool_name in self.external:
                index = self._calls.setdefault(event.tool_call_id, len(self._calls))
                call = {
                    "index": index,
                    "id": event.tool_call_id,
                    "type": "function",
                    "function": {"name": event.tool_name, "arguments": ""},
                }
                return [self._chunk({"tool_calls": [call]})]
            case ev.ToolCallArgsDelta() if event.tool_call_id in self._calls:
                call = {
                    "index": self._calls[event.tool_call_id],
                    "function": {"arguments": event.delta},
                }
                return [self._chunk({"tool_calls": [call]})]
            case ev.Usage():
                self._usage[0] += event.prompt_tokens
                self._usage[1] += event.completion_tokens
            case ev.RunFinished():
                return self._finish(FINISH_REASONS.get(event.finish_reason, "stop"))
            case ev.RunSuspended():
                return self.error_frames("approval_required", suspended_message(event))
            case ev.RunFailed():
                return self.error_frames(event.code, event.message)
        return []

    def _finish(self, reason: str) -> Frames:
        frames = [self._chunk({}, reason)]
        if self.include_usage:
            prompt, completion = self._usage
            usage = {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            }
            frames.append(
                _data(
                    {
                        "id": self.completion_id,
                        "object": "chat.completion.chunk",
                        "created": self.created,
                        "model": self.model,
                        "choices": [],
                        "usage": usage,
                    }
                )
            )
        return frames

    def error_frames(self, code: str, message: str) -> Frames:
        body = error_body(500, message, code=code)
        if code == "approval_required":
            body["error"]["type"] = "invalid_request_error"
        return [_data(body)]


def suspended_message(event: ev.RunSuspended) -> str:
    waiting = ", ".join(event.waiting_for)
    return (
        f"the run is waiting for a person to approve tool call(s) {waiting}: answer with "
        "POST /api/runs/{run_id}/approvals/{tool_call_id} (the X-Run-Id header names the run)"
    )


def completion(
    reply: Reply, *, completion_id: str, model: str, external: frozenset[str], created: int
) -> dict[str, Any]:
    """One ``chat.completion`` object from a finished run."""
    calls = [
        {
            "id": call.tool_call_id,
            "type": "function",
            "function": {"name": call.tool_name, "arguments": _arguments(call.args)},
        }
        for call in reply.tool_calls.values()
        if call.tool_name in external and call.status == "requested"
    ]
    message: dict[str, Any] = {"role": "assistant", "content": reply.text or None, "refusal": None}
    if calls:
        message["tool_calls"] = calls
    finish = reply.finish_reason if isinstance(reply.outcome, ev.RunFinished) else "stop"
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": FINISH_REASONS.get(finish, "stop"),
                "logprobs": None,
            }
        ],
        "usage": {
            "prompt_tokens": reply.prompt_tokens,
            "completion_tokens": reply.completion_tokens,
            "total_tokens": reply.prompt_tokens + reply.completion_tokens,
        },
    }


def _arguments(args: dict[str, Any]) -> str:
    """A call's arguments as JSON text; arguments that were not JSON (the engine keeps them
    under ``__invalid_json__``) go back as the model wrote them, as the stream sends them."""
    raw = args.get("__invalid_json__")
    return raw if isinstance(raw, str) and len(args) == 1 else json.dumps(args)


# the client's messages as parley messages ----------------------------------------------


@dataclass
class ClientHistory:
    """An OpenAI ``messages`` array in parley's terms.

    ``messages`` are stored before the turn (role and UIMessage parts, tool results folded into
    the assistant message that called them); ``user_parts`` is the new user message, or None
    when the array ends with tool results (the reply then continues after them).
    """

    system: str | None = None
    messages: list[tuple[str, list[Part]]] = field(default_factory=list)
    user_parts: list[Part] | None = None

    @property
    def tool_outputs(self) -> dict[str, Any]:
        """Results the client sent for the calls of its last assistant message."""
        for role, parts in reversed(self.messages):
            if role == "assistant":
                return {
                    p["toolCallId"]: p["output"]
                    for p in parts
                    if p["type"] == "dynamic-tool" and p["state"] == "output-available"
                }
        return {}


def client_history(messages: list[dict[str, Any]]) -> ClientHistory:
    history = ClientHistory()
    system: list[str] = []
    for index, message in enumerate(messages):
        role = message.get("role")
        if role in ("system", "developer"):
            system.append(_text(message.get("content")))
        elif role == "user":
            history.messages.append(("user", _user_parts(message.get("content"), index)))
        elif role == "assistant":
            history.messages.append(("assistant", _assistant_parts(message, index)))
        elif role == "tool":
            _fold_tool_result(history, message, index)
        else:
            raise ValidationFailed(f"messages[{index}].role {role!r} is not supported")
    history.system = "\n\n".join(s for s in system if s) or None
    if history.messages and history.messages[-1][0] == "user":
        history.user_parts = history.messages.pop()[1]
    elif not history.messages:
        raise ValidationFailed("messages needs at least one user message")
    return history


def _text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    raise ValidationFailed("message content must be a string or a list of parts")


def _user_parts(content: Any, index: int) -> list[Part]:
    if not isinstance(content, list):
        text = _text(content)
        return [{"type": "text", "text": text}] if text else _empty(index)
    parts: list[Part] = []
    for position, item in enumerate(content):
        kind = item.get("type") if isinstance(item, dict) else None
        if kind == "text":
            parts.append({"type": "text", "text": str(item.get("text", ""))})
        elif kind == "image_url":
            image = item.get("image_url")
            url = image.get("url") if isinstance(image, dict) else None
            where = f"messages[{index}].content[{position}].image_url"
            parts.append(file_part(url=url, media_type=_media_type(url), field=where))
        else:
            raise ValidationFailed(
                f"messages[{index}].content: part type {kind!r} is not supported"
            )
    return parts or _empty(index)


def _empty(index: int) -> list[Part]:
    raise ValidationFailed(f"messages[{index}] is empty")


def _media_type(url: object) -> str:
    """The media type a data: URL names (RFC 2397's text/plain if none), else a guess from a
    link's path, for an ``image_url`` that does not say."""
    if not isinstance(url, str):
        return "image/jpeg"
    if url[:5].lower() == "data:":
        return url[5:].split(",", 1)[0].split(";", 1)[0].strip() or "text/plain"
    guessed, _ = mimetypes.guess_type(url.split("?", 1)[0])
    return guessed or "image/jpeg"


def _assistant_parts(message: dict[str, Any], index: int) -> list[Part]:
    parts: list[Part] = [{"type": "step-start"}]
    text = _text(message.get("content"))
    if text:
        parts.append({"type": "text", "text": text})
    calls = message.get("tool_calls") or []
    if not isinstance(calls, list):
        raise ValidationFailed(f"messages[{index}].tool_calls must be a list")
    for position, call in enumerate(calls):
        name, call_id, arguments = _call_fields(call, f"messages[{index}].tool_calls[{position}]")
        try:
            args = json.loads(arguments or "{}")
        except json.JSONDecodeError as exc:
            raise ValidationFailed(f"messages[{index}]: tool call arguments are not JSON") from exc
        if holds_lone_surrogate(args):
            raise ValidationFailed(f"messages[{index}]: tool call arguments: {LONE_SURROGATE}")
        parts.append(
            {
                "type": "dynamic-tool",
                "toolName": name,
                "toolCallId": call_id,
                "state": "input-available",
                "input": args,
            }
        )
    return parts


def _call_fields(call: object, where: str) -> tuple[str, str, str]:
    """A client's tool call as its name, id and argument text, each checked to be a string."""
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(call, dict) or not isinstance(function, dict):
        raise ValidationFailed(f"{where} must be an object with a function object")
    values = (function.get("name", ""), call.get("id", ""), function.get("arguments") or "")
    if not all(isinstance(v, str) for v in values):
        raise ValidationFailed(f"{where}: id, function.name and function.arguments are strings")
    return values


def _fold_tool_result(history: ClientHistory, message: dict[str, Any], index: int) -> None:
    call_id = message.get("tool_call_id")
    if history.messages and history.messages[-1][0] == "assistant":
        for part in history.messages[-1][1]:
            if part["type"] == "dynamic-tool" and part["toolCallId"] == call_id:
                part.update({"state": "output-available", "output": _text(message.get("content"))})
                return
    raise ValidationFailed(
        f"messages[{index}]: a tool message must answer a tool call of the assistant message "
        "before it"
    )
