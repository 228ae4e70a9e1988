"""The limits of one user message: one table, the same on every door.

=================  =========================  ==============================================
limit              setting                    what counts
=================  =========================  ==============================================
characters         ``max_message_chars``      the text of its text parts, together
attachments        ``max_attachments``        its file parts
attachment size    ``max_attachment_bytes``   the bytes in each file part's ``data:`` URL
request body       ``max_body_bytes``         held at the edge: every HTTP request
                                              (:class:`parley.api.middleware.Edge`) and every
                                              message on the progress socket
=================  =========================  ==============================================

:meth:`parley.engine.turn.Engine.check` applies the first three before anything is written;
each door turns the :class:`~parley.errors.ValidationFailed` into its own error shape.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from parley.chat.messages import FileUIPart, Part
from parley.config import Settings
from parley.errors import ValidationFailed


@dataclass(frozen=True)
class MessageLimits:
    chars: int
    attachments: int
    attachment_bytes: int

    @classmethod
    def of(cls, settings: Settings) -> MessageLimits:
        return cls(
            chars=settings.max_message_chars,
            attachments=settings.max_attachments,
            attachment_bytes=settings.max_attachment_bytes,
        )

    def check(self, parts: Sequence[Part]) -> None:
        """Raise :class:`ValidationFailed` naming the first limit the message's parts go over."""
        chars = sum(len(p["text"]) for p in parts if p["type"] == "text")
        if chars > self.chars:
            raise ValidationFailed(f"the message is longer than {self.chars} characters")
        files = [p for p in parts if p["type"] == "file"]
        if len(files) > self.attachments:
            raise ValidationFailed(f"at most {self.attachments} attachments")
        for part in files:
            if inline_bytes(part) > self.attachment_bytes:
                name = part.get("filename", "")
                raise ValidationFailed(f"attachment {name!r} is over {self.attachment_bytes} bytes")


def inline_bytes(part: FileUIPart) -> int:
    """The bytes a file part carries in its ``data:`` URL; a link to elsewhere carries none."""
    url = part["url"]
    if url[:5].lower() != "data:":
        return 0
    header, _, payload = url.partition(",")
    if header.lower().endswith(";base64"):
        return len(payload.rstrip("=")) * 3 // 4
    return len(unquote_to_bytes(payload))
