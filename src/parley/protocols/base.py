"""The encoder seam: lifecycle hooks around a run's events.

After the first byte an exception cannot become an HTTP status any more: ``on_error`` turns it into
the format's own error event, and the stream ends cleanly.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from sse_starlette import ServerSentEvent

from parley.chat.events import EngineEvent
from parley.errors import ParleyError

Frames = list[ServerSentEvent]


def sse(
    data: str | None = None,
    *,
    event: str | None = None,
    id: str | None = None,
    comment: str | None = None,
) -> ServerSentEvent:
    """One event, its lines ended with ``"\n"``: sse-starlette's default ``"\r\n"`` leaves a
    ``"\r"`` on every line for a reader that splits on ``"\n"`` (``"[DONE]\r"`` never ends it)."""
    return ServerSentEvent(data, event=event, id=id, comment=comment, sep="\n")


class Encoder(ABC):
    content_type = "text/event-stream"
    with_ids = False

    @property
    def headers(self) -> dict[str, str]:
        return {"Cache-Control": "no-cache, no-transform", "X-Accel-Buffering": "no"}

    def before_stream(self) -> Frames:
        return []

    @abstractmethod
    def encode(self, seq: int, event: EngineEvent) -> Frames:
        """Frames for one engine event (often none)."""

    def after_stream(self) -> Frames:
        return [sse("[DONE]")]

    def on_error(self, exc: Exception) -> Frames:
        code, message = "ERR_INTERNAL", "the stream failed"
        if isinstance(exc, ParleyError):
            code, message = exc.code, exc.message
        return self.error_frames(code, message)

    @abstractmethod
    def error_frames(self, code: str, message: str) -> Frames:
        """The format's own error event."""
