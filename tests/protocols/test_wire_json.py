"""Every door writes its JSON one way (``parley.wire.compact``): text as UTF-8, no spaces."""

from __future__ import annotations

import pytest
from sse_starlette import ServerSentEvent

from parley.chat import events as ev
from parley.protocols.base import Encoder
from parley.protocols.native_sse import NativeSSE
from parley.protocols.openai_chat import OpenAIChunks
from parley.protocols.seeds import SessionChatSSE, TodoChatSSE
from parley.protocols.vercel_data_stream import VercelDataStream
from parley.protocols.vercel_ui import VercelUIStream

TEXT = "héllo, 世界 👋"


@pytest.mark.parametrize(
    "encoder",
    [
        NativeSSE(run_id="run_1", conversation_id="conv_1"),
        OpenAIChunks(completion_id="chatcmpl-1", model="m"),
        SessionChatSSE(session_id="s_1", run_id="run_1"),
        TodoChatSSE(conversation_id="conv_1", run_id="run_1"),
        VercelUIStream(message_id="msg_1"),
        VercelDataStream(message_id="msg_1"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_a_text_delta_goes_out_as_compact_utf8_json(encoder: Encoder) -> None:
    frames: list[ServerSentEvent] = []
    for event in (
        ev.RunStarted(
            run_id="run_1",
            conversation_id="conv_1",
            user_message_id=None,
            message_id="msg_1",
            model="m",
        ),
        ev.TextDelta(content=TEXT),
    ):
        frames += encoder.encode(1, event)
    wire = b"".join(f.encode() for f in frames).decode()
    assert TEXT in wire  # not \\u escapes
    assert '": ' not in wire and '", "' not in wire
