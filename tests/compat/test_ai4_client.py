"""The real ai@4 client (ai@4.3.19) on the chat playground, ``POST /mcp/chat-v2``: ``node/ai4.mjs``
sends the body ai@4's ``useChat`` builds through ``callChatApi`` and reads the answer with
ai@4's own ``processDataStream``. Needs ``npm ci --prefix tests/compat/node``.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any
from unittest.mock import ANY

import pytest
from tests.conftest import Live, token

from parley.auth import Principal
from parley.chat import events as ev
from parley.providers.openai import OpenAIProvider
from parley.providers.scripted import ScriptedProvider
from parley.tools.base import FunctionTool, ToolContext
from parley.tools.registry import ToolRegistry

NODE_DIR = Path(__file__).parent / "node"
NODE = shutil.which("node")

pytestmark = [
    pytest.mark.skipif(NODE is None, reason="node is not installed"),
    pytest.mark.skipif(
        not (NODE_DIR / "node_modules" / "ai4").is_dir(),
        reason="the AI SDK clients are not installed: run npm ci --prefix tests/compat/node",
    ),
]


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"enable_chat_v2": True}


WEATHER_CALL = {
    "tool_call": {"name": "get_weather", "arguments": {"city": "Paris"}, "id": "call_1"}
}
DATA_STREAM = {
    "content-type": "text/plain; charset=utf-8",
    "x-vercel-ai-data-stream": "v1",
    "x-chat-session-id": ANY,
    "x-error-code": None,
}


async def ai4(live: Live, scenario: dict[str, Any], seconds: float = 20) -> dict[str, Any]:
    """What ``node/ai4.mjs`` saw for one scenario: responses, parts, the message, the error."""
    assert NODE is not None
    process = await asyncio.create_subprocess_exec(
        NODE,
        str(NODE_DIR / "ai4.mjs"),
        live.url,
        token("alice"),
        json.dumps(scenario),
        cwd=NODE_DIR,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(seconds):
            stdout, stderr = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, stderr.decode()
    result: dict[str, Any] = json.loads(stdout.decode().splitlines()[-1])["result"]
    assert result["parseError"] is None, result["parseError"]
    return result


def user(text: str, **fields: Any) -> dict[str, Any]:
    return {"id": "u1", "role": "user", "content": text, **fields}


def weather(registry: ToolRegistry, *, approval: bool = False) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []

    async def get_weather(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
        calls.append(args)
        return {"tempC": 21}

    registry.register(FunctionTool("get_weather", get_weather, requires_approval=approval))
    return calls


def kinds(parts: list[list[Any]]) -> list[str]:
    return [kind for kind, _ in parts]


def usage(prompt: int, completion: int) -> dict[str, Any]:
    return {"promptTokens": prompt, "completionTokens": completion}


async def test_a_text_reply_reaches_ai4_with_its_step_finish_and_usage(
    live: Live, scripted: ScriptedProvider
) -> None:
    scripted.enqueue(
        [{"text": ["Hel", "lo"]}, {"usage": {"prompt_tokens": 3, "completion_tokens": 2}}]
    )
    scenario = {"id": "chat-4", "messages": [user("Hi")], "body": {"sessionId": "sess-4"}}
    result = await ai4(live, scenario)
    assert result["error"] is None
    assert result["responses"] == [
        {"status": 200, "headers": {**DATA_STREAM, "x-chat-session-id": "sess-4"}}
    ]
    message_id = result["message"]["id"]
    assert message_id.startswith("msg_")
    assert result["parts"] == [
        ["start_step", {"messageId": message_id}],
        ["text", "Hel"],
        ["text", "lo"],
        ["finish_step", {"finishReason": "stop", "usage": usage(3, 2), "isContinued": False}],
        ["finish_message", {"finishReason": "stop", "usage": usage(3, 2)}],
    ]
    finished = result["finished"]
    assert finished["finishReason"] == "stop"
    assert finished["usage"] == {"promptTokens": 3, "completionTokens": 2, "totalTokens": 5}
    assert finished["message"]["content"] == "Hello"
    assert finished["message"]["parts"] == [
        {"type": "step-start"},
        {"type": "text", "text": "Hello"},
    ]
    assert scripted.requests[0].messages[-1].content == "Hi"


async def test_a_tool_call_its_result_and_the_answer_are_two_steps_of_one_message(
    live: Live, scripted: ScriptedProvider, tool_registry: ToolRegistry
) -> None:
    calls = weather(tool_registry)
    scripted.enqueue(
        [
            {"text": "Looking."},
            WEATHER_CALL,
            {"usage": {"prompt_tokens": 5, "completion_tokens": 4}},
        ],
        [{"text": "It is 21C."}, {"usage": {"prompt_tokens": 9, "completion_tokens": 3}}],
    )
    result = await ai4(live, {"id": "chat-tools", "messages": [user("Weather in Paris?")]})
    assert result["error"] is None
    parts = result["parts"]
    assert kinds(parts) == [
        "start_step",
        "text",
        "tool_call_streaming_start",
        "tool_call_delta",
        "tool_call_delta",
        "tool_call",
        "tool_result",
        "finish_step",
        "start_step",
        "text",
        "finish_step",
        "finish_message",
    ]
    assert parts[5][1] == {
        "toolCallId": "call_1",
        "toolName": "get_weather",
        "args": {"city": "Paris"},
    }
    assert parts[6][1] == {"toolCallId": "call_1", "result": {"tempC": 21}}
    assert parts[7][1] == {"finishReason": "tool-calls", "usage": usage(5, 4), "isContinued": False}
    assert parts[-1][1] == {"finishReason": "stop", "usage": usage(14, 7)}
    message = result["finished"]["message"]
    assert message["toolInvocations"] == [
        {
            "state": "result",
            "step": 0,
            "toolCallId": "call_1",
            "toolName": "get_weather",
            "args": {"city": "Paris"},
            "result": {"tempC": 21},
        }
    ]
    assert [p["type"] for p in message["parts"]] == [
        "step-start",
        "text",
        "tool-invocation",
        "step-start",
        "text",
    ]
    assert message["content"] == "Looking.It is 21C."
    assert calls == [{"city": "Paris"}]


async def test_a_provider_failure_is_an_error_part_with_its_code(
    live: Live, scripted: ScriptedProvider
) -> None:
    scripted.enqueue(
        [{"text": "partial"}, {"error": {"code": "ERR_PROVIDER_UNAVAILABLE", "message": "down"}}]
    )
    result = await ai4(live, {"id": "chat-error", "messages": [user("Hi")]})
    assert result["error"] == "ERR_PROVIDER_UNAVAILABLE: down"
    assert result["parts"][-3:] == [
        ["error", "ERR_PROVIDER_UNAVAILABLE: down"],
        ["finish_step", {"finishReason": "error", "usage": usage(0, 0), "isContinued": False}],
        ["finish_message", {"finishReason": "error", "usage": usage(0, 0)}],
    ]
    assert result["message"]["content"] == "partial"


async def test_a_provider_with_no_key_is_a_json_error_before_any_stream(live: Live) -> None:
    keyless = OpenAIProvider(base_url=None, api_key=None)  # api.openai.com, no OPENAI_API_KEY
    live.services.providers.register("openai", keyless, default_model="gpt-4o-mini")
    scenario = {
        "id": "chat-nokey",
        "messages": [user("Hi")],
        "body": {"model": "openai/gpt-4o-mini"},
    }
    result = await ai4(live, scenario)
    response = result["responses"][0]
    assert response["status"] >= 400
    assert response["headers"]["x-error-code"] == "ERR_API_KEY_MISSING"
    error = json.loads(result["error"])["error"]
    assert error["code"] == "ERR_API_KEY_MISSING" and "OPENAI_API_KEY" in error["message"]
    assert result["parts"] == []


@pytest.mark.parametrize(
    "settings_overrides", [{"enable_chat_v2": True, "enable_chat_v2_approvals": True}]
)
async def test_an_approval_is_a_data_part_and_its_answer_continues_the_same_message(
    live: Live, scripted: ScriptedProvider, tool_registry: ToolRegistry
) -> None:
    calls = weather(tool_registry)
    scripted.enqueue([WEATHER_CALL], [{"text": "It is 21C."}])
    first = await ai4(live, {"id": "chat-approve", "messages": [user("Weather?")]})
    assert first["error"] is None
    (approval,) = first["data"]
    assert approval == {
        "type": "tool-approval",
        "approvalId": ANY,
        "toolCallId": "call_1",
        "toolName": "get_weather",
        "input": {"city": "Paris"},
        "runId": ANY,
        "expiresAt": ANY,
        "status": "pending",
    }
    assert first["finished"]["finishReason"] == "tool-calls"
    asked = first["finished"]["message"]
    assert asked["toolInvocations"][0]["state"] == "call"

    answer = {"toolApprovals": [{"id": approval["approvalId"], "approved": True}]}
    scenario = {"id": "chat-approve", "messages": [user("Weather?"), asked], "body": answer}
    second = await ai4(live, scenario)
    assert second["error"] is None
    assert kinds(second["parts"]) == [
        "data",
        "tool_result",
        "start_step",
        "text",
        "finish_step",
        "finish_message",
    ]
    assert second["data"][0]["status"] == "approved"
    message = second["finished"]["message"]
    assert message["id"] == asked["id"]
    assert message["toolInvocations"][0]["state"] == "result"
    assert message["content"] == "It is 21C."
    assert calls == [{"city": "Paris"}]


async def test_experimental_resume_with_nothing_running_reads_an_empty_stream(live: Live) -> None:
    result = await ai4(live, {"id": "chat-idle", "messages": [user("Hi")], "resume": True})
    assert result["error"] is None
    assert result["responses"][0]["status"] == 200
    assert result["parts"] == []


async def ended(live: Live, run_id: str) -> list[ev.EngineEvent]:
    """The run's events once it has ended (a run waiting for a person has not)."""
    async with asyncio.timeout(5):
        return [event async for _, event in live.services.runs.events(Principal("alice"), run_id)]


@pytest.mark.parametrize(
    "settings_overrides",
    [{"enable_chat_v2": True, "enable_chat_v2_approvals": True, "approval_timeout": 0.3}],
)
async def test_a_resume_after_an_approval_timed_out_tells_the_denial_and_the_rest_once(
    live: Live, scripted: ScriptedProvider, tool_registry: ToolRegistry
) -> None:
    calls = weather(tool_registry)
    scripted.enqueue([WEATHER_CALL], [{"text": "I could not check."}])
    first = await ai4(live, {"id": "chat-late", "messages": [user("Weather?")]})
    (asked_data,) = first["data"]
    assert asked_data["status"] == "pending"
    asked = first["finished"]["message"]
    assert asked["toolInvocations"][0]["state"] == "call"
    assert isinstance((await ended(live, asked_data["runId"]))[-1], ev.RunFinished)

    scenario = {"id": "chat-late", "messages": [user("Weather?"), asked], "resume": True}
    resumed = await ai4(live, scenario)
    assert resumed["error"] is None
    assert resumed["responses"][0]["status"] == 200
    assert kinds(resumed["parts"]) == [
        "data",
        "tool_result",
        "start_step",
        "text",
        "finish_step",
        "finish_message",
    ]
    assert resumed["data"] == [
        {**asked_data, "status": "denied", "reason": "timed out", "by": "timeout"}
    ]
    message = resumed["finished"]["message"]
    assert message["id"] == asked["id"]
    (invocation,) = message["toolInvocations"]
    assert invocation["state"] == "result" and "timed out" in invocation["result"]["error"]
    assert message["content"] == "I could not check."
    assert resumed["finished"]["finishReason"] == "stop"
    assert calls == []

    again = await ai4(live, scenario)
    assert (again["responses"][0]["status"], again["parts"]) == (200, [])


async def branch_of(live: Live, chat_id: str) -> list[Any]:
    store = live.services.store
    convo = await store.find_conversation_by_external("alice", chat_id)
    assert convo is not None
    return list(await store.branch("alice", convo.id, leaf_id=convo.active_leaf_id))


async def test_reload_regenerates_the_last_reply_as_a_sibling_not_a_second_question(
    live: Live, scripted: ScriptedProvider
) -> None:
    scripted.enqueue([{"text": "First."}], [{"text": "Second."}])
    first = await ai4(live, {"id": "chat-reload", "messages": [user("Hi")]})
    reply = first["finished"]["message"]
    scenario = {"id": "chat-reload", "messages": [user("Hi"), reply], "reload": True}
    again = await ai4(live, scenario)
    assert again["error"] is None
    assert again["finished"]["message"]["content"] == "Second."
    new_id = again["finished"]["message"]["id"]
    assert new_id != reply["id"]
    branch = await branch_of(live, "chat-reload")
    assert [(m.role, m.text) for m in branch] == [("user", "Hi"), ("assistant", "Second.")]
    assert branch[1].id == new_id
    assert branch[1].parent_id == branch[0].id
    old = await live.services.store.get_message("alice", branch[0].conversation_id, reply["id"])
    assert (old.parent_id, old.text) == (branch[0].id, "First.")
    assert [m.content for m in scripted.requests[1].messages if m.role == "user"] == ["Hi"]


async def test_a_new_question_with_the_same_text_is_still_a_new_message(
    live: Live, scripted: ScriptedProvider
) -> None:
    scripted.enqueue([{"text": "One."}], [{"text": "Two."}])
    first = await ai4(live, {"id": "chat-twice", "messages": [user("Hi")]})
    messages = [user("Hi"), first["finished"]["message"], user("Hi")]
    await ai4(live, {"id": "chat-twice", "messages": messages})
    branch = await branch_of(live, "chat-twice")
    assert [m.text for m in branch] == ["Hi", "One.", "Hi", "Two."]


@pytest.mark.parametrize("settings_overrides", [{"enable_chat_v2": True, "max_steps": 1}])
async def test_max_steps_re_posts_the_tool_results_and_the_model_goes_on_from_them(
    live: Live, scripted: ScriptedProvider, tool_registry: ToolRegistry
) -> None:
    calls = weather(tool_registry)
    scripted.enqueue([WEATHER_CALL], [{"text": "It is 21C."}])
    scenario = {"id": "chat-steps", "messages": [user("Weather?")], "maxSteps": 3}
    result = await ai4(live, scenario)
    assert result["error"] is None
    assert [r["status"] for r in result["responses"]] == [200, 200]
    message = result["finished"]["message"]
    assert [p["type"] for p in message["parts"]] == [
        "step-start",
        "tool-invocation",
        "step-start",
        "text",
    ]
    assert message["toolInvocations"][0]["result"] == {"tempC": 21}
    assert message["content"] == "It is 21C."
    assert calls == [{"city": "Paris"}]
    assert [m.role for m in scripted.requests[1].messages][-2:] == ["assistant", "tool"]
    branch = await branch_of(live, "chat-steps")
    assert [(m.role, m.text) for m in branch][-1] == ("assistant", "It is 21C.")


@pytest.mark.parametrize(
    ("answer", "outcome"), [("Yes, confirmed.", "approved"), ("No, denied.", "denied")]
)
@pytest.mark.parametrize(
    "settings_overrides", [{"enable_chat_v2": True, "enable_chat_v2_approvals": True}]
)
async def test_a_client_side_tool_result_answers_the_approval_and_the_run_goes_on(
    live: Live,
    scripted: ScriptedProvider,
    tool_registry: ToolRegistry,
    answer: str,
    outcome: str,
) -> None:
    """ai@4's human-in-the-loop: ``onToolCall`` (or ``addToolResult``) gives the call a result,
    and ``maxSteps`` re-posts it."""
    calls = weather(tool_registry)
    scripted.enqueue([WEATHER_CALL], [{"text": "Done."}])
    scenario = {
        "id": "chat-hitl",
        "messages": [user("Weather?")],
        "maxSteps": 5,
        "toolResults": {"get_weather": answer},
    }
    result = await ai4(live, scenario)
    assert result["error"] is None
    assert [r["status"] for r in result["responses"]] == [200, 200]
    assert [d["status"] for d in result["data"]] == [outcome]
    message = result["finished"]["message"]
    (invocation,) = message["toolInvocations"]
    if outcome == "approved":
        assert (invocation["result"], calls) == ({"tempC": 21}, [{"city": "Paris"}])
    else:
        assert "No, denied." in invocation["result"]["error"] and calls == []
    assert message["content"] == "Done."
    assert result["finished"]["finishReason"] == "stop"
