"""The ai@4 Data Stream encoder: whole streams, line by line (protocols.md 1.10)."""

from __future__ import annotations

import json
from typing import Any

from tests.support.frames import frames, wire

from parley.chat import events as ev
from parley.errors import ProviderUnavailable
from parley.protocols.vercel_data_stream import VercelDataStream

CODES = set("0239abcdefghijk")


def parts(text: str) -> list[tuple[str, Any]]:
    """Each line as ai@4's parser splits it: the code before the first ``:``, then JSON."""
    assert text.endswith("\n") or text == ""
    out = []
    for line in text.splitlines():
        code, _, value = line.partition(":")
        assert code in CODES, line
        out.append((code, json.loads(value)))
    return out


async def stream(events: list[ev.EngineEvent], **kwargs: Any) -> list[tuple[str, Any]]:
    encoder = VercelDataStream(message_id="msg_1", run_id="run_1", **kwargs)
    return parts(wire(await frames(encoder, events)))


def started() -> ev.RunStarted:
    return ev.RunStarted(
        run_id="run_1",
        conversation_id="conv_1",
        user_message_id="msg_0",
        message_id="msg_1",
        model="scripted/demo",
    )


def tool_call(call_id: str = "call_1") -> list[ev.EngineEvent]:
    return [
        ev.ToolCallStarted(tool_call_id=call_id, tool_name="get_weather"),
        ev.ToolCallArgsDelta(tool_call_id=call_id, delta='{"city":'),
        ev.ToolCallArgsDelta(tool_call_id=call_id, delta='"Paris"}'),
        ev.Usage(prompt_tokens=5, completion_tokens=4),
        ev.ToolCallReady(tool_call_id=call_id, tool_name="get_weather", args={"city": "Paris"}),
        ev.StepFinished(step=1, finish_reason="tool_calls"),
    ]


def usage(prompt: int, completion: int) -> dict[str, int]:
    return {"promptTokens": prompt, "completionTokens": completion}


def step_end(reason: str, prompt: int = 0, completion: int = 0) -> tuple[str, Any]:
    return ("e", {"finishReason": reason, "usage": usage(prompt, completion), "isContinued": False})


async def test_a_tool_turn_is_two_steps_with_the_result_before_the_first_step_ends() -> None:
    events = [
        started(),
        ev.ReasoningDelta(content="think"),
        ev.TextDelta(content="Looking."),
        *tool_call(),
        ev.ToolResult(tool_call_id="call_1", tool_name="get_weather", result={"tempC": 21}),
        ev.TextDelta(content="It is "),
        ev.TextDelta(content="21C."),
        ev.Usage(prompt_tokens=9, completion_tokens=3),
        ev.StepFinished(step=2, finish_reason="stop"),
        ev.RunFinished(message_id="msg_1", finish_reason="stop"),
    ]
    assert await stream(events) == [
        ("f", {"messageId": "msg_1"}),
        ("g", "think"),
        ("0", "Looking."),
        ("b", {"toolCallId": "call_1", "toolName": "get_weather"}),
        ("c", {"toolCallId": "call_1", "argsTextDelta": '{"city":'}),
        ("c", {"toolCallId": "call_1", "argsTextDelta": '"Paris"}'}),
        ("9", {"toolCallId": "call_1", "toolName": "get_weather", "args": {"city": "Paris"}}),
        ("a", {"toolCallId": "call_1", "result": {"tempC": 21}}),
        step_end("tool-calls", 5, 4),
        ("f", {"messageId": "msg_1"}),
        ("0", "It is "),
        ("0", "21C."),
        step_end("stop", 9, 3),
        ("d", {"finishReason": "stop", "usage": usage(14, 7)}),
    ]


async def test_the_wire_is_one_line_per_part_in_compact_utf8_json() -> None:
    encoder = VercelDataStream(message_id="msg_1")
    written = wire(await frames(encoder, [ev.TextDelta(content="héllo\nworld")]))
    assert written == (
        'f:{"messageId":"msg_1"}\n'
        '0:"héllo\\nworld"\n'
        'e:{"finishReason":"other","usage":{"promptTokens":0,"completionTokens":0},'
        '"isContinued":false}\n'
        'd:{"finishReason":"other","usage":{"promptTokens":0,"completionTokens":0}}\n'
    )


async def test_a_failed_run_is_an_error_part_with_its_code_then_the_finish() -> None:
    events = [
        started(),
        ev.TextDelta(content="partial"),
        ev.RunFailed(message_id="msg_1", code="ERR_PROVIDER_UNAVAILABLE", message="down"),
    ]
    assert await stream(events) == [
        ("f", {"messageId": "msg_1"}),
        ("0", "partial"),
        ("3", "ERR_PROVIDER_UNAVAILABLE: down"),
        step_end("error"),
        ("d", {"finishReason": "error", "usage": usage(0, 0)}),
    ]


async def test_a_stream_that_breaks_ends_with_an_error_part_and_a_clean_finish() -> None:
    encoder = VercelDataStream(message_id="msg_1")
    written = await frames(
        encoder, [ev.TextDelta(content="x")], fail=ProviderUnavailable("the model went away")
    )
    assert parts(wire(written))[-3:] == [
        ("3", "ERR_PROVIDER_UNAVAILABLE: the model went away"),
        step_end("error"),
        ("d", {"finishReason": "error", "usage": usage(0, 0)}),
    ]


async def test_a_failed_or_denied_tool_is_a_result_holding_the_error() -> None:
    events = [
        *tool_call(),
        ev.ToolFailed(tool_call_id="call_1", tool_name="get_weather", error="denied: no"),
    ]
    out = await stream(events)
    assert ("a", {"toolCallId": "call_1", "result": {"error": "denied: no"}}) in out
    assert "3" not in [code for code, _ in out]


async def test_an_approval_is_a_data_part_and_the_response_ends_at_the_suspension() -> None:
    events = [
        started(),
        *tool_call(),
        ev.ApprovalRequested(
            tool_call_id="call_1",
            tool_name="get_weather",
            args={"city": "Paris"},
            approval_id="appr_1",
            expires_at="2030-01-01T00:00:00+00:00",
        ),
        ev.RunSuspended(message_id="msg_1", waiting_for=["call_1"]),
    ]
    out = await stream(events)
    assert out[-4:] == [
        ("9", {"toolCallId": "call_1", "toolName": "get_weather", "args": {"city": "Paris"}}),
        (
            "2",
            [
                {
                    "type": "tool-approval",
                    "approvalId": "appr_1",
                    "toolCallId": "call_1",
                    "toolName": "get_weather",
                    "input": {"city": "Paris"},
                    "runId": "run_1",
                    "expiresAt": "2030-01-01T00:00:00+00:00",
                    "status": "pending",
                }
            ],
        ),
        step_end("tool-calls", 5, 4),
        ("d", {"finishReason": "tool-calls", "usage": usage(5, 4)}),
    ]


async def test_a_continuation_marks_the_earlier_approval_answered_then_goes_on() -> None:
    asked = {"approvalId": "appr_1", "toolCallId": "call_1", "status": "pending"}
    events = [
        ev.ApprovalResolved(
            tool_call_id="call_1", tool_name="get_weather", approved=False, reason="timed out"
        ),
        ev.ToolFailed(
            tool_call_id="call_1", tool_name="get_weather", error="timed out", denied=True
        ),
        ev.TextDelta(content="No weather, then."),
        ev.StepFinished(step=2, finish_reason="stop"),
        ev.RunFinished(message_id="msg_1", finish_reason="stop"),
    ]
    assert await stream(events, approvals=[asked]) == [
        ("2", [{"type": "tool-approval", **asked, "status": "denied", "reason": "timed out"}]),
        ("a", {"toolCallId": "call_1", "result": {"error": "timed out"}}),
        ("f", {"messageId": "msg_1"}),
        ("0", "No weather, then."),
        step_end("stop"),
        ("d", {"finishReason": "stop", "usage": usage(0, 0)}),
    ]


async def test_questions_notices_and_side_effects_are_data_parts() -> None:
    events = [
        ev.RunStarted(
            run_id="run_1",
            conversation_id="conv_1",
            user_message_id=None,
            message_id="msg_1",
            model="m",
            side_effects=[{"tool_name": "add_task"}],
        ),
        ev.ElicitationRequested(
            elicitation_id="el_1",
            tool_call_id="call_1",
            server="todo",
            message="Which list?",
            requested_schema={"type": "object"},
            expires_at="2030-01-01T00:00:00+00:00",
        ),
        ev.ElicitationResolved(elicitation_id="el_1", action="accept"),
        ev.ToolProgress(tool_call_id="call_1", tool_name="t", message="half", progress=0.5),
        ev.StepLimitReached(max_steps=3),
        ev.RunFinished(message_id="msg_1", finish_reason="max_steps"),
    ]
    out = await stream(events)
    data = [value[0] for code, value in out if code == "2"]
    assert [(d["type"], d.get("status")) for d in data] == [
        ("side-effects", None),
        ("elicitation", "pending"),
        ("elicitation", "accept"),
        ("notice", None),
    ]
    assert data[0]["sideEffects"] == [{"tool_name": "add_task"}]
    assert data[1]["message"] == "Which list?" and data[1]["runId"] == "run_1"
    assert data[3] == {
        "type": "notice",
        "code": "max_steps",
        "message": ev.StepLimitReached(max_steps=3).message,
    }
    assert out[-1] == ("d", {"finishReason": "tool-calls", "usage": usage(0, 0)})


def test_its_headers_name_the_protocol_the_run_and_the_session() -> None:
    encoder = VercelDataStream(message_id="m", run_id="run_1", session_id="sess-1")
    assert encoder.content_type == "text/plain; charset=utf-8"
    assert encoder.headers == {
        "Cache-Control": "no-cache, no-transform",
        "X-Accel-Buffering": "no",
        "X-Vercel-AI-Data-Stream": "v1",
        "X-Run-Id": "run_1",
        "X-Chat-Session-Id": "sess-1",
    }
