"""Turn a run's event stream into an SSE response through an encoder."""

from __future__ import annotations

from collections.abc import AsyncIterator

import structlog
from sse_starlette import EventSourceResponse, ServerSentEvent

from parley.chat.events import EngineEvent
from parley.protocols.base import Encoder

log = structlog.get_logger("parley.stream")


def _ping() -> ServerSentEvent:
    return ServerSentEvent(comment="ping")


async def encoded(
    encoder: Encoder, events: AsyncIterator[tuple[int, EngineEvent]]
) -> AsyncIterator[ServerSentEvent]:
    for frame in encoder.before_stream():
        yield frame
    try:
        async for seq, event in events:
            for frame in encoder.encode(seq, event):
                yield frame
    except Exception as exc:
        log.warning("stream_failed", error=str(exc))
        for frame in encoder.on_error(exc):
            yield frame
    for frame in encoder.after_stream():
        yield frame


def sse_response(
    encoder: Encoder,
    events: AsyncIterator[tuple[int, EngineEvent]],
    *,
    ping: float = 15.0,
    status_code: int = 200,
) -> EventSourceResponse:
    return EventSourceResponse(
        encoded(encoder, events),
        status_code=status_code,
        headers=encoder.headers,
        media_type=encoder.content_type,
        ping=ping,
        ping_message_factory=_ping,
        sep="\n",
    )
