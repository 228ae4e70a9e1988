"""OpenAI chunks, completions, error bodies, and the client's messages as parley parts."""

from __future__ import annotations

from typing import Any

import pytest
from tests.support.frames import data, frames, wire

from parley.chat import events as ev
from parley.errors import ValidationFailed
from parley.protocols.openai_chat import (
    OpenAIChunks,
    client_history,
    completion,
    error_body,
)
from parley.protocols.reply import Reply


def encoder(**options: Any) -> OpenAIChunks:
    return OpenAIChunks(completion_id="chatcmpl-1", model="m", created=1, **options)


def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
    }


async def test_a_text_stream_with_usage() -> None:
    events = [
        ev.RunStarted(
            run_id="r", conversation_id="c", user_message_id="u", message_id="m", model="m"
        ),
        ev.TextDelta(content="Hel"),
        ev.ReasoningDelta(content="hidden"),
        ev.TextDelta(content="lo"),
        ev.Usage(prompt_tokens=3, completion_tokens=2),
        ev.RunFinished(message_id="m", finish_reason="stop"),
    ]
    out = data(await frames(encoder(include_usage=True), events))
    assert out == [
        chunk({"role": "assistant", "content": "", "refusal": None}),
        chunk({"content": "Hel"}),
        chunk({"content": "lo"}),
        chunk({}, "stop"),
        {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "m",
            "choices": [],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
        },
        "[DONE]",
    ]


async def test_only_the_clients_tool_calls_are_streamed_as_fragments() -> None:
    events = [
        ev.ToolCallStarted(tool_call_id="own", tool_name="add_task"),
        ev.ToolCallArgsDelta(tool_call_id="own", delta="{}"),
        ev.ToolCallStarted(tool_call_id="call_1", tool_name="get_weather"),
        ev.ToolCallArgsDelta(tool_call_id="call_1", delta='{"city":'),
        ev.ToolCallArgsDelta(tool_call_id="call_1", delta='"Paris"}'),
        ev.RunFinished(message_id="m", finish_reason="tool_calls"),
    ]
    out = data(await frames(encoder(external=frozenset({"get_weather"})), events))
    assert out[1:] == [
        chunk(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": ""},
                    }
                ]
            }
        ),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}),
        chunk({}, "tool_calls"),
        "[DONE]",
    ]


async def test_errors_in_a_stream_are_error_objects_and_the_wire_has_no_ids() -> None:
    events = [
        ev.TextDelta(content="x"),
        ev.RunFailed(message_id="m", code="ERR_PROVIDER_UNAVAILABLE", message="down"),
    ]
    written = await frames(encoder(), events)
    assert data(written)[-2] == {
        "error": {
            "message": "down",
            "type": "server_error",
            "param": None,
            "code": "ERR_PROVIDER_UNAVAILABLE",
        }
    }
    lines = [line for line in wire(written).splitlines() if line]
    assert all(line.startswith("data: ") for line in lines)


async def test_a_suspended_run_is_an_approval_required_error() -> None:
    out = data(await frames(encoder(), [ev.RunSuspended(message_id="m", waiting_for=["c1"])]))
    assert out[-2]["error"]["code"] == "approval_required"
    assert "c1" in out[-2]["error"]["message"]


def test_a_completion_carries_text_the_clients_calls_and_usage() -> None:
    reply = Reply()
    for event in [
        ev.ToolCallReady(tool_call_id="own", tool_name="add_task", args={}),
        ev.ToolResult(tool_call_id="own", tool_name="add_task", result="ok"),
        ev.ToolCallReady(tool_call_id="call_1", tool_name="get_weather", args={"city": "P"}),
        ev.TextDelta(content="Let me check."),
        ev.Usage(prompt_tokens=5, completion_tokens=4),
        ev.RunFinished(message_id="m", finish_reason="tool_calls"),
    ]:
        reply.add(event)
    body = completion(
        reply, completion_id="chatcmpl-1", model="m", external=frozenset({"get_weather"}), created=1
    )
    assert body["choices"] == [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "Let me check.",
                "refusal": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "P"}'},
                    }
                ],
            },
            "finish_reason": "tool_calls",
            "logprobs": None,
        }
    ]
    assert body["usage"] == {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9}


@pytest.mark.parametrize(
    ("status", "kind", "code"),
    [
        (401, "invalid_request_error", "invalid_api_key"),
        (404, "invalid_request_error", "not_found"),
        (400, "invalid_request_error", None),
        (429, "requests", "rate_limit_exceeded"),
        (502, "server_error", None),
    ],
)
def test_error_bodies_have_openais_shape(status: int, kind: str, code: str | None) -> None:
    assert error_body(status, "m") == {
        "error": {"message": "m", "type": kind, "param": None, "code": code}
    }


def test_client_history_becomes_stored_messages_and_a_new_user_message() -> None:
    history = client_history(
        [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": "Use metric."},
            {"role": "user", "content": "Weather?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"P"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "21C"},
            {"role": "assistant", "content": "It is 21C."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "And this?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                ],
            },
        ]
    )
    assert history.system == "Be brief.\n\nUse metric."
    assert history.messages == [
        ("user", [{"type": "text", "text": "Weather?"}]),
        (
            "assistant",
            [
                {"type": "step-start"},
                {
                    "type": "dynamic-tool",
                    "toolName": "get_weather",
                    "toolCallId": "c1",
                    "state": "output-available",
                    "input": {"city": "P"},
                    "output": "21C",
                },
            ],
        ),
        ("assistant", [{"type": "step-start"}, {"type": "text", "text": "It is 21C."}]),
    ]
    assert history.user_parts == [
        {"type": "text", "text": "And this?"},
        {"type": "file", "mediaType": "image/png", "url": "data:image/png;base64,AAAA"},
    ]


def test_a_history_ending_in_tool_results_continues_after_them() -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    history = client_history(
        [
            {"role": "user", "content": "go"},
            {"role": "assistant", "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "c1", "content": "done"},
        ]
    )
    assert history.user_parts is None
    assert history.tool_outputs == {"c1": "done"}


@pytest.mark.parametrize(
    "messages",
    [
        [{"role": "tool", "tool_call_id": "c9", "content": "x"}],
        [{"role": "user", "content": ""}],
        [{"role": "wizard", "content": "x"}],
        [{"role": "system", "content": "only a system prompt"}],
        [{"role": "user", "content": [{"type": "input_audio"}]}],
    ],
)
def test_bad_histories_are_validation_errors(messages: list[dict[str, Any]]) -> None:
    with pytest.raises(ValidationFailed):
        client_history(messages)


async def test_a_run_stopped_at_its_step_limit_finishes_with_length() -> None:
    events = [
        ev.TextDelta(content="partial"),
        ev.StepLimitReached(max_steps=8),
        ev.RunFinished(message_id="m", finish_reason="max_steps"),
    ]
    out = data(await frames(encoder(), events))
    assert out[-2:] == [chunk({}, "length"), "[DONE]"]
