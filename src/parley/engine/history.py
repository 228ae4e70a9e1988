"""Stored messages (UIMessage parts) to the provider-neutral chat history."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from parley.chat.messages import Part
from parley.providers.base import ChatMessage, ImagePart, TextPart, ToolCallRequest
from parley.store.tables import Message

DENIED = "The user denied this tool call."


def to_chat(
    messages: Sequence[Message], *, system: str | None, max_result_chars: int
) -> list[ChatMessage]:
    """The history a model sees: the system prompt, then each message of the branch."""
    chat: list[ChatMessage] = []
    if system:
        chat.append(ChatMessage(role="system", content=system))
    for message in messages:
        if message.role == "user":
            chat.append(user_message(message.parts))
        elif message.role == "assistant":
            chat.extend(assistant_messages(message.parts, max_result_chars))
        elif message.role == "system":
            chat.append(ChatMessage(role="system", content=message.text))
    return chat


def user_message(parts: Iterable[Part]) -> ChatMessage:
    content: list[TextPart | ImagePart] = []
    for part in parts:
        if part.get("type") == "text":
            content.append(TextPart(text=part["text"]))
        elif part.get("type") == "file":
            content.append(_file_part(part))
    if all(isinstance(p, TextPart) for p in content):
        return ChatMessage(role="user", content="".join(p.text for p in content))  # type: ignore[union-attr]
    return ChatMessage(role="user", content=content)


def _file_part(part: Part) -> TextPart | ImagePart:
    media_type = part.get("mediaType", "application/octet-stream")
    url: str = part.get("url", "")
    if media_type.startswith("image/"):
        if url.startswith("data:"):
            return ImagePart(media_type=media_type, data=url.split(",", 1)[-1])
        return ImagePart(media_type=media_type, url=url)
    text = part.get("text")
    if text is None and url.startswith("data:"):
        import base64

        text = base64.b64decode(url.split(",", 1)[-1]).decode("utf-8", "replace")
    name = part.get("filename") or "attachment"
    return TextPart(text=f"\n\n[file {name}]\n{text or ''}\n[end of file {name}]\n")


def assistant_messages(parts: Sequence[Part], max_result_chars: int) -> list[ChatMessage]:
    """One assistant message per step, each followed by the results of its tool calls."""
    out: list[ChatMessage] = []
    for step in _steps(parts):
        text = "".join(p["text"] for p in step if p.get("type") == "text")
        tools = [p for p in step if p.get("type") == "dynamic-tool"]
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


def _steps(parts: Sequence[Part]) -> list[list[Part]]:
    steps: list[list[Part]] = [[]]
    for part in parts:
        if part.get("type") == "step-start":
            if steps[-1]:
                steps.append([])
        else:
            steps[-1].append(part)
    return [s for s in steps if s]


def tool_result_text(part: Part, max_chars: int) -> str:
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
