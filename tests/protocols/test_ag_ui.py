"""The AG-UI encoder: every frame is one of ``ag-ui-protocol``'s events, in the order its
client's verifier demands (text and reasoning closed before a tool call and the run's end)."""

from __future__ import annotations

import json
from typing import Any

from ag_ui.core import Event
from pydantic import TypeAdapter

from parley.chat import events as ev
from parley.protocols.ag_ui import AGUIStream

EVENT: TypeAdapter[Any] = TypeAdapter(Event)


def stream(events: list[ev.EngineEvent]) -> list[dict[str, Any]]:
    encoder = AGUIStream(
        thread_id="t1",
        run_id="r1",
        parley_run_id="run_1",
        conversation_id="conv_1",
        message_id="msg_1",
        snapshot=[],
    )
    frames = [*encoder.before_stream()]
    for seq, event in enumerate(events, start=1):
        frames += encoder.encode(seq, event)
    frames += encoder.after_stream()
    decoded = []
    for frame in frames:
        text = frame.encode().decode()
        assert text.startswith("data: ") and text.endswith("\n\n"), text
        body = json.loads(text.removeprefix("data: "))
        EVENT.validate_python(body)
        decoded.append(body)
    return decoded


def brief(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [
        (e["type"], e.get("delta") or e.get("toolCallId") or e.get("messageId", "")) for e in events
    ]


def test_reasoning_text_and_a_tool_call_become_closed_spans_before_the_run_ends() -> None:
    events = stream(
        [
            ev.ReasoningDelta(content="hmm"),
            ev.TextDelta(content="Let me look."),
            ev.ToolCallStarted(tool_call_id="c1", tool_name="get_weather"),
            ev.ToolCallArgsDelta(tool_call_id="c1", delta='{"city":"Paris"}'),
            ev.ToolCallReady(tool_call_id="c1", tool_name="get_weather", args={"city": "Paris"}),
            ev.ToolResult(tool_call_id="c1", tool_name="get_weather", result={"tempC": 21}),
            ev.TextDelta(content="21C."),
            ev.Usage(prompt_tokens=4, completion_tokens=3),
            ev.RunFinished(message_id="msg_1", finish_reason="stop"),
        ]
    )
    assert brief(events) == [
        ("RUN_STARTED", ""),
        ("MESSAGES_SNAPSHOT", ""),
        ("REASONING_START", "msg_1:reasoning1"),
        ("REASONING_MESSAGE_START", "msg_1:reasoning1"),
        ("REASONING_MESSAGE_CONTENT", "hmm"),
        ("REASONING_MESSAGE_END", "msg_1:reasoning1"),
        ("REASONING_END", "msg_1:reasoning1"),
        ("TEXT_MESSAGE_START", "msg_1"),
        ("TEXT_MESSAGE_CONTENT", "Let me look."),
        ("TEXT_MESSAGE_END", "msg_1"),
        ("TOOL_CALL_START", "c1"),
        ("TOOL_CALL_ARGS", '{"city":"Paris"}'),
        ("TOOL_CALL_END", "c1"),
        ("TOOL_CALL_RESULT", "c1"),
        ("TEXT_MESSAGE_START", "msg_1"),
        ("TEXT_MESSAGE_CONTENT", "21C."),
        ("TEXT_MESSAGE_END", "msg_1"),
        ("RUN_FINISHED", ""),
    ]
    assert events[-5]["content"] == '{"tempC":21}'
    assert events[-1]["usage"] == [{"inputTokens": 4, "outputTokens": 3, "totalTokens": 7}]


def test_an_approval_ends_the_run_with_an_interrupt_the_client_can_answer() -> None:
    events = stream(
        [
            ev.ToolCallReady(tool_call_id="c1", tool_name="delete_task", args={"task_id": 1}),
            ev.ApprovalRequested(
                tool_call_id="c1",
                tool_name="delete_task",
                args={"task_id": 1},
                approval_id="appr_1",
                expires_at="2030-01-01T00:00:00+00:00",
            ),
            ev.RunSuspended(message_id="msg_1", waiting_for=["c1"]),
        ]
    )
    assert [e["type"] for e in events][-4:] == [
        "TOOL_CALL_START",
        "TOOL_CALL_ARGS",
        "TOOL_CALL_END",
        "RUN_FINISHED",
    ]
    [interrupt] = events[-1]["outcome"]["interrupts"]
    assert events[-1]["outcome"]["type"] == "interrupt"
    assert (interrupt["id"], interrupt["toolCallId"], interrupt["reason"]) == (
        "appr_1",
        "c1",
        "tool_approval",
    )


def test_a_failure_after_text_closes_the_text_and_is_a_run_error() -> None:
    events = stream(
        [
            ev.TextDelta(content="Par"),
            ev.RunFailed(message_id="msg_1", code="ERR_PROVIDER_UNAVAILABLE", message="boom"),
        ]
    )
    assert [e["type"] for e in events][-2:] == ["TEXT_MESSAGE_END", "RUN_ERROR"]
    assert events[-1] == {
        "type": "RUN_ERROR",
        "message": "boom",
        "code": "ERR_PROVIDER_UNAVAILABLE",
    }


def test_a_stream_cut_before_the_run_ended_still_ends_with_a_run_error() -> None:
    events = stream([ev.TextDelta(content="Par")])
    assert [e["type"] for e in events][-2:] == ["TEXT_MESSAGE_END", "RUN_ERROR"]
