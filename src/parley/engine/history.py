"""Stored messages (UIMessage parts) to the provider-neutral chat history."""

from __future__ import annotations

import base64
import functools
import json
from collections.abc import Iterable, Sequence
from typing import Any

import structlog

from parley.chat.files import read_data_url
from parley.chat.messages import DynamicToolUIPart, FileUIPart, Part
from parley.providers.base import ChatMessage, ImagePart, TextPart, ToolCallRequest
from parley.store.values import Message

DENIED = "The user denied this tool call."

log = structlog.get_logger("parley.engine")


def to_chat(
    messages: Sequence[Message], *, system: str | None, max_result_chars: int
) -> list[ChatMessage]:
    """The history a model sees: the system prompt, then each message of the branch."""
    chat: list[ChatMessage] = []
    if system:
        chat.append(ChatMessage(role="system", content=system))
    for message in messages:
        if message.role == "user":
            chat.append(user_message(message.parts, message.id))
        elif message.role == "assistant":
            chat.extend(assistant_messages(message.parts, max_result_chars, message.id))
        elif message.role == "system":
            chat.append(ChatMessage(role="system", content=message.text))
    return chat


def user_message(parts: Iterable[Part], message_id: str | None = None) -> ChatMessage:
    """A user message's text and files; a stored part that cannot be read becomes a short
    marker (a file) or nothing, and is reported, so that one bad part never fails every turn."""
    content: list[TextPart | ImagePart] = []
    for index, part in enumerate(parts):
        try:
            content.extend(_user_part(part))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            _report(message_id or "", index, str(exc)[:200] or type(exc).__name__)
            content.extend(_unreadable(part))
    if all(isinstance(p, TextPart) for p in content):
        return ChatMessage(role="user", content="".join(p.text for p in content))  # type: ignore[union-attr]
    return ChatMessage(role="user", content=content)


def _user_part(part: Part) -> list[TextPart | ImagePart]:
    if part["type"] == "text":
        return [TextPart(text=part["text"])]
    if part["type"] == "file":
        return [_file_part(part)]
    return []


def _file_part(part: FileUIPart) -> TextPart | ImagePart:
    media_type = part.get("mediaType", "application/octet-stream")
    url = part.get("url", "")
    inline = read_data_url(url) if url[:5].lower() == "data:" else None
    if media_type.startswith("image/"):
        if inline is not None:
            return ImagePart(media_type=media_type, data=base64.b64encode(inline.data).decode())
        if url[:8].lower() != "https://" and url[:7].lower() != "http://":
            raise ValueError("an image that is neither a data: URL nor an http(s) link")
        return ImagePart(media_type=media_type, url=url)
    text = part.get("text")
    if text is None and inline is not None:
        text = inline.data.decode("utf-8", "replace")
    name = part.get("filename") or "attachment"
    return TextPart(text=f"\n\n[file {name}]\n{text or ''}\n[end of file {name}]\n")


def _unreadable(part: Part) -> list[TextPart | ImagePart]:
    if not isinstance(part, dict) or part.get("type") != "file":
        return []
    name = part.get("filename") if isinstance(part.get("filename"), str) else "attachment"
    return [TextPart(text=f"\n\n[file {name}: could not be read]\n")]


@functools.lru_cache(maxsize=4096)
def _report(message_id: str, index: int, reason: str) -> None:
    """Log a stored part history cannot read, once: the same history is read every turn."""
    log.warning("history_part_skipped", message_id=message_id, part=index, reason=reason)


def assistant_messages(
    parts: Sequence[Part], max_result_chars: int, message_id: str | None = None
) -> list[ChatMessage]:
    """One assistant message per step, each followed by the results of its tool calls; a
    stored part that cannot be read is reported and left out."""
    out: list[ChatMessage] = []
    for step in _steps(_readable(parts, message_id or "")):
        text = "".join(p["text"] for p in step if p["type"] == "text")
        tools = [p for p in step if p["type"] == "dynamic-tool"]
        if not text and not tools:
            continue
        calls = [
            ToolCallRequest(
                id=p["toolCallId"], name=p["toolName"], arguments=json.dumps(p.get("input") or {})
            )
            for p in tools
        ]
        out.append(ChatMessage(role="assistant", content=text, tool_calls=calls))
        for part in tools:
            out.append(
                ChatMessage(
                    role="tool",
                    tool_call_id=part["toolCallId"],
                    name=part["toolName"],
                    content=tool_result_text(part, max_result_chars),
                )
            )
    return out


def _readable(parts: Sequence[Part], message_id: str) -> list[Part]:
    kept: list[Part] = []
    for index, part in enumerate(parts):
        if _usable(part):
            kept.append(part)
        else:
            _report(message_id, index, "a part without the fields of its type")
    return kept


def _usable(part: object) -> bool:
    if not isinstance(part, dict):
        return False
    kind = part.get("type")
    if not isinstance(kind, str):
        return False
    if kind in ("text", "reasoning"):
        return isinstance(part.get("text"), str)
    if kind == "dynamic-tool":
        names = (part.get("toolCallId"), part.get("toolName"))
        error = part.get("errorText")
        return all(isinstance(n, str) for n in names) and (error is None or isinstance(error, str))
    return True


def _steps(parts: Sequence[Part]) -> list[list[Part]]:
    steps: list[list[Part]] = [[]]
    for part in parts:
        if part["type"] == "step-start":
            if steps[-1]:
                steps.append([])
        else:
            steps[-1].append(part)
    return [s for s in steps if s]


def tool_result_text(part: DynamicToolUIPart, max_chars: int) -> str:
    """What the model is told about a tool call; long results are cut, the store keeps all."""
    state = part.get("state")
    if state == "output-available":
        text = _as_text(part.get("output"))
    elif state == "output-denied":
        text = part.get("errorText") or DENIED
    elif state == "output-error":
        text = f"Error: {part.get('errorText') or 'the tool failed'}"
    else:
        text = "The tool call did not complete."
    if len(text) > max_chars:
        text = text[:max_chars] + f"\n[... cut: {len(text) - max_chars} more characters]"
    return text


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
