"""Run engine events through an encoder (with its lifecycle hooks) and decode what it wrote."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

from sse_starlette import ServerSentEvent

from parley.api.streaming import encoded
from parley.chat.events import EngineEvent
from parley.protocols.base import Encoder


async def frames(
    encoder: Encoder, events: Sequence[EngineEvent], *, fail: Exception | None = None
) -> list[ServerSentEvent]:
    """Every frame the encoder writes for ``events``; ``fail`` is raised after the last one."""

    async def source() -> AsyncIterator[tuple[int, EngineEvent]]:
        for seq, event in enumerate(events, start=1):
            yield seq, event
        if fail is not None:
            raise fail

    return [frame async for frame in encoded(encoder, source())]


def data(written: list[ServerSentEvent]) -> list[Any]:
    """The ``data`` of each frame, JSON-decoded (``[DONE]`` stays a string); comment frames
    (``: ok``), which carry none, are left out."""
    return [
        f.data if f.data == "[DONE]" else json.loads(f.data) for f in written if f.data is not None
    ]


def wire(written: list[ServerSentEvent]) -> str:
    return b"".join(f.encode() for f in written).decode()
