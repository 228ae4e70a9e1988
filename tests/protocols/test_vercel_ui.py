"""The UI message stream encoder: whole streams, the strict key sets of older clients, versions."""

from __future__ import annotations

from typing import Any
from unittest.mock import ANY

import pytest
from tests.support.frames import data, frames, wire

from parley.chat import events as ev
from parley.errors import ProviderUnavailable
from parley.protocols.vercel_ui import Features, VercelUIStream

# protocols.md 1.8: the keys every 5.x and 6.x client accepts (strict zod objects before
# ai@5.0.217 / ai@6.0.231); data-* parts take id, data, transient.
SAFE_KEYS: dict[str, set[str]] = {
    "start": {"messageId", "messageMetadata"},
    "start-step": set(),
    "finish-step": set(),
    "text-start": {"id", "providerMetadata"},
    "text-end": {"id", "providerMetadata"},
    "text-delta": {"id", "delta", "providerMetadata"},
    "reasoning-start": {"id", "providerMetadata"},
    "reasoning-end": {"id", "providerMetadata"},
    "reasoning-delta": {"id", "delta", "providerMetadata"},
    "tool-input-start": {"toolCallId", "toolName", "providerExecuted", "dynamic"},
    "tool-input-delta": {"toolCallId", "inputTextDelta"},
    "tool-input-available": {
        "toolCallId",
        "toolName",
        "input",
        "providerExecuted",
        "providerMetadata",
        "dynamic",
    },
    "tool-output-available": {"toolCallId", "output", "providerExecuted", "dynamic"},
    "tool-output-error": {"toolCallId", "errorText", "providerExecuted", "dynamic"},
    "finish": {"messageMetadata"},
    "message-metadata": {"messageMetadata"},
    "error": {"errorText"},
    "abort": set(),
}


def assert_safe(chunks: list[Any]) -> None:
    for item in chunks:
        if item == "[DONE]":
            continue
        kind = item["type"]
        allowed = {"id", "data", "transient"} if kind.startswith("data-") else SAFE_KEYS[kind]
        assert set(item) - {"type"} <= allowed, item


def started(message_id: str = "msg_1") -> ev.RunStarted:
    return ev.RunStarted(
        run_id="run_1",
        conversation_id="conv_1",
        user_message_id="msg_0",
        message_id=message_id,
        model="scripted/demo",
    )


def tool_call(name: str = "get_weather", call_id: str = "call_1") -> list[ev.EngineEvent]:
    return [
        ev.ToolCallStarted(tool_call_id=call_id, tool_name=name),
        ev.ToolCallArgsDelta(tool_call_id=call_id, delta='{"city":'),
        ev.ToolCallArgsDelta(tool_call_id=call_id, delta='"Paris"}'),
        ev.ToolCallReady(tool_call_id=call_id, tool_name=name, args={"city": "Paris"}),
        ev.StepFinished(step=1, finish_reason="tool_calls"),
    ]


def approval(call_id: str = "call_1") -> ev.ApprovalRequested:
    return ev.ApprovalRequested(
        tool_call_id=call_id,
        tool_name="get_weather",
        args={"city": "Paris"},
        approval_id="appr_1",
        expires_at="2030-01-01T00:00:00+00:00",
    )


def encoder(hint: str | None = None) -> VercelUIStream:
    return VercelUIStream(message_id="msg_1", run_id="run_1", features=Features.from_hint(hint))


async def test_a_text_reply_is_one_step_with_one_text_part() -> None:
    events = [
        started(),
        ev.TextDelta(content="Hel"),
        ev.TextDelta(content="lo"),
        ev.StepFinished(step=1, finish_reason="stop"),
        ev.Usage(prompt_tokens=3, completion_tokens=2),
        ev.RunFinished(message_id="msg_1", finish_reason="stop"),
    ]
    out = data(await frames(encoder(), events))
    assert out == [
        {"type": "start", "messageId": "msg_1"},
        {"type": "start-step"},
        {"type": "text-start", "id": "text_1"},
        {"type": "text-delta", "id": "text_1", "delta": "Hel"},
        {"type": "text-delta", "id": "text_1", "delta": "lo"},
        {"type": "text-end", "id": "text_1"},
        {"type": "finish-step"},
        {
            "type": "finish",
            "messageMetadata": {"usage": {"inputTokens": 3, "outputTokens": 2, "totalTokens": 5}},
        },
        "[DONE]",
    ]
    assert_safe(out)


async def test_the_wire_has_only_data_lines() -> None:
    written = await frames(encoder(), [started(), ev.TextDelta(content="x")])
    lines = [line for line in wire(written).splitlines() if line]
    assert all(line.startswith("data: ") for line in lines)
    assert "data: " not in [line.rstrip() for line in lines]


async def test_a_server_tool_then_text_spans_two_steps_with_outputs_in_the_first() -> None:
    events = [
        started(),
        ev.ReasoningDelta(content="think"),
        *tool_call(),
        ev.ToolResult(tool_call_id="call_1", tool_name="get_weather", result={"tempC": 21}),
        ev.TextDelta(content="It is 21C."),
        ev.StepFinished(step=2, finish_reason="stop"),
        ev.RunFinished(message_id="msg_1", finish_reason="stop"),
    ]
    out = data(await frames(encoder("6"), events))
    assert out == [
        {"type": "start", "messageId": "msg_1"},
        {"type": "start-step"},
        {"type": "reasoning-start", "id": "reasoning_1"},
        {"type": "reasoning-delta", "id": "reasoning_1", "delta": "think"},
        {"type": "reasoning-end", "id": "reasoning_1"},
        {
            "type": "tool-input-start",
            "toolCallId": "call_1",
            "toolName": "get_weather",
            "dynamic": True,
        },
        {"type": "tool-input-delta", "toolCallId": "call_1", "inputTextDelta": '{"city":'},
        {"type": "tool-input-delta", "toolCallId": "call_1", "inputTextDelta": '"Paris"}'},
        {
            "type": "tool-input-available",
            "toolCallId": "call_1",
            "toolName": "get_weather",
            "input": {"city": "Paris"},
            "dynamic": True,
        },
        {
            "type": "tool-output-available",
            "toolCallId": "call_1",
            "output": {"tempC": 21},
            "dynamic": True,
        },
        {"type": "finish-step"},
        {"type": "start-step"},
        {"type": "text-start", "id": "text_2"},
        {"type": "text-delta", "id": "text_2", "delta": "It is 21C."},
        {"type": "text-end", "id": "text_2"},
        {"type": "finish-step"},
        {"type": "finish", "finishReason": "stop"},
        "[DONE]",
    ]


async def test_a_v6_client_gets_an_approval_request_and_the_response_ends_at_the_suspension() -> (
    None
):
    events = [
        started(),
        *tool_call(),
        approval(),
        ev.RunSuspended(message_id="msg_1", waiting_for=["call_1"]),
    ]
    out = data(await frames(encoder("6.0.0"), events))
    assert out[-4:] == [
        {"type": "tool-approval-request", "approvalId": "appr_1", "toolCallId": "call_1"},
        {"type": "finish-step"},
        {"type": "finish", "finishReason": "tool-calls"},
        "[DONE]",
    ]


async def test_without_a_hint_an_approval_is_a_data_part_and_every_key_is_safe() -> None:
    events = [
        started(),
        *tool_call(),
        approval(),
        ev.RunSuspended(message_id="msg_1", waiting_for=["call_1"]),
    ]
    out = data(await frames(encoder(), events))
    assert out[-4:] == [
        {
            "type": "data-tool-approval",
            "id": "appr_1",
            "data": {
                "approvalId": "appr_1",
                "toolCallId": "call_1",
                "toolName": "get_weather",
                "input": {"city": "Paris"},
                "runId": "run_1",
                "expiresAt": "2030-01-01T00:00:00+00:00",
                "status": "pending",
            },
        },
        {"type": "finish-step"},
        {"type": "finish"},
        "[DONE]",
    ]
    assert_safe(out)


async def test_a_continuation_reuses_the_message_id_and_sends_outputs_before_the_next_step() -> (
    None
):
    events = [
        ev.ApprovalResolved(tool_call_id="call_1", tool_name="get_weather", approved=True),
        ev.ToolResult(tool_call_id="call_1", tool_name="get_weather", result={"tempC": 21}),
        ev.TextDelta(content="21C"),
        ev.StepFinished(step=2, finish_reason="stop"),
        ev.RunFinished(message_id="msg_1", finish_reason="stop"),
    ]
    out = data(await frames(encoder("6"), events))
    assert out == [
        {"type": "start", "messageId": "msg_1"},
        {
            "type": "tool-output-available",
            "toolCallId": "call_1",
            "output": {"tempC": 21},
            "dynamic": True,
        },
        {"type": "start-step"},
        {"type": "text-start", "id": "text_1"},
        {"type": "text-delta", "id": "text_1", "delta": "21C"},
        {"type": "text-end", "id": "text_1"},
        {"type": "finish-step"},
        {"type": "finish", "finishReason": "stop"},
        "[DONE]",
    ]


@pytest.mark.parametrize(
    ("hint", "expected"),
    [
        ("6", [{"type": "tool-output-denied", "toolCallId": "call_1"}]),
        (
            None,
            [
                {
                    "type": "data-tool-approval",
                    "id": "appr_1",
                    "data": {
                        "approvalId": "appr_1",
                        "toolCallId": "call_1",
                        "toolName": "get_weather",
                        "input": {"city": "Paris"},
                        "runId": "run_1",
                        "expiresAt": "2030-01-01T00:00:00+00:00",
                        "status": "denied",
                        "reason": "no",
                    },
                },
                {
                    "type": "tool-output-error",
                    "toolCallId": "call_1",
                    "errorText": "The user denied this tool call. Reason: no",
                    "dynamic": True,
                },
            ],
        ),
    ],
)
async def test_a_denial_is_output_denied_for_v6_and_an_output_error_before(
    hint: str | None, expected: list[dict[str, Any]]
) -> None:
    stream = encoder(hint)
    await frames(stream, [started(), *tool_call(), approval()])
    denial = [
        ev.ApprovalResolved(
            tool_call_id="call_1", tool_name="get_weather", approved=False, reason="no"
        ),
        ev.ToolFailed(
            tool_call_id="call_1",
            tool_name="get_weather",
            error="The user denied this tool call. Reason: no",
            denied=True,
        ),
    ]
    out = [d for e in denial for d in data(stream.encode(0, e))]
    assert out == expected


async def test_a_failed_run_becomes_an_error_chunk_and_a_clean_end() -> None:
    events = [
        started(),
        ev.TextDelta(content="partial"),
        ev.RunFailed(message_id="msg_1", code="ERR_PROVIDER_UNAVAILABLE", message="upstream"),
    ]
    out = data(await frames(encoder("6"), events))
    assert out[-5:] == [
        {"type": "text-delta", "id": "text_1", "delta": "partial"},
        {"type": "text-end", "id": "text_1"},
        {"type": "finish-step"},
        {"type": "error", "errorText": "upstream"},
        "[DONE]",
    ]


async def test_an_exception_after_the_first_byte_becomes_an_error_chunk() -> None:
    out = data(
        await frames(encoder(), [started()], fail=ProviderUnavailable("the model went away"))
    )
    assert out == [
        {"type": "start", "messageId": "msg_1"},
        {"type": "error", "errorText": "the model went away"},
        "[DONE]",
    ]


async def test_a_foreign_exception_is_masked() -> None:
    out = data(await frames(encoder(), [started()], fail=RuntimeError("secret detail")))
    assert out[1] == {"type": "error", "errorText": "the stream failed"}


async def test_elicitations_and_progress_are_data_parts() -> None:
    events = [
        started(),
        *tool_call(),
        ev.ToolProgress(
            tool_call_id="call_1", tool_name="get_weather", message="half", progress=1, total=2
        ),
        ev.ElicitationRequested(
            elicitation_id="elic_1",
            tool_call_id="call_1",
            server="weather",
            message="Which unit?",
            requested_schema={"type": "object"},
            expires_at="2030-01-01T00:00:00+00:00",
        ),
        ev.ElicitationResolved(elicitation_id="elic_1", action="accept"),
    ]
    out = data(await frames(encoder(), events))
    progress, asked, answered = out[-6:-3]
    assert progress == {
        "type": "data-tool-progress",
        "id": "call_1",
        "data": {
            "toolCallId": "call_1",
            "toolName": "get_weather",
            "message": "half",
            "progress": 1.0,
            "total": 2.0,
        },
        "transient": True,
    }
    assert asked["type"] == answered["type"] == "data-elicitation"
    assert asked["id"] == answered["id"] == "elic_1"
    assert (asked["data"]["status"], answered["data"]["status"]) == ("pending", "accept")
    assert answered["data"]["message"] == "Which unit?"
    assert_safe(out)


@pytest.mark.parametrize(
    ("hint", "features"),
    [
        (None, Features()),
        ("5", Features()),
        ("5.0.91", Features()),
        ("5.0.92", Features(finish_reason=True)),
        ("6", Features(finish_reason=True, approvals=True)),
        ("v6.0.231", Features(finish_reason=True, approvals=True)),
        ("nonsense", Features()),
    ],
)
def test_the_version_hint_unlocks_fields_by_version(hint: str | None, features: Features) -> None:
    assert Features.from_hint(hint) == features


def test_the_headers_name_the_protocol() -> None:
    headers = VercelUIStream(message_id="m", run_id="run_1", session_id="conv_1").headers
    assert headers["X-Vercel-AI-UI-Message-Stream"] == "v1"
    assert headers["Cache-Control"] == "no-cache"
    assert headers["X-Accel-Buffering"] == "no"
    assert headers["X-Run-Id"] == "run_1"
    assert headers["X-Chat-Session-Id"] == "conv_1"


@pytest.mark.parametrize("hint", [None, "5.0.92", "6"])
async def test_a_run_stopped_at_its_step_limit_says_so_in_a_data_part(hint: str | None) -> None:
    events = [
        started(),
        *tool_call(),
        ev.ToolResult(tool_call_id="call_1", tool_name="get_weather", result={"tempC": 21}),
        ev.StepLimitReached(max_steps=1),
        ev.RunFinished(message_id="msg_1", finish_reason="max_steps"),
    ]
    out = data(await frames(encoder(hint), events))
    notices = [c for c in out if c != "[DONE]" and c["type"] == "data-notice"]
    assert notices == [{"type": "data-notice", "data": {"code": "max_steps", "message": ANY}}]
    assert notices[0]["data"]["message"].startswith("Stopped after 1 steps")
    finish = next(c for c in out if c != "[DONE]" and c["type"] == "finish")
    assert finish.get("finishReason", "other") == "other"
    if hint is None:
        assert_safe(out)
