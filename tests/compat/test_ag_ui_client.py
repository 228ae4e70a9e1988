"""@ag-ui/client's ``HttpAgent`` (1.0.0) on ``POST /ag-ui``: ``node/ag_ui.mjs`` runs the agent
against a live parley, and every event it received is validated with ``ag-ui-protocol``'s own
pydantic models. Needs ``npm ci --prefix tests/compat/node``.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from ag_ui.core import Event
from pydantic import TypeAdapter
from tests.conftest import Live, token

from parley.tools.base import FunctionTool, ToolContext
from parley.tools.registry import ToolRegistry

NODE_DIR = Path(__file__).parent / "node"
NODE = shutil.which("node")
EVENT: TypeAdapter[Any] = TypeAdapter(Event)

pytestmark = [
    pytest.mark.skipif(NODE is None, reason="node is not installed"),
    pytest.mark.skipif(
        not (NODE_DIR / "node_modules" / "@ag-ui" / "client").is_dir(),
        reason="@ag-ui/client is not installed: run npm ci --prefix tests/compat/node",
    ),
]


async def http_agent(live: Live, scenario: dict[str, Any], seconds: float = 20) -> dict[str, Any]:
    """What ``node/ag_ui.mjs`` saw: each run's events (validated here), error and outcome."""
    assert NODE is not None
    process = await asyncio.create_subprocess_exec(
        NODE,
        str(NODE_DIR / "ag_ui.mjs"),
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
    for run in result["runs"]:
        for event in run["events"]:
            EVENT.validate_python(event)
    return result


def kinds(run: dict[str, Any]) -> list[str]:
    return [event["type"] for event in run["events"]]


async def test_a_text_reply_is_one_run_of_text_message_events_with_usage(live: Live) -> None:
    live.scripted.enqueue(
        [{"text": ["Hel", "lo"]}, {"usage": {"prompt_tokens": 3, "completion_tokens": 2}}]
    )
    scenario = {"threadId": "thread-text", "runs": [{"runId": "r1", "user": "Hi"}]}
    [run] = (result := await http_agent(live, scenario))["runs"]
    assert run["error"] is None and run["outcome"] == "success"
    assert kinds(run) == [
        "RUN_STARTED",
        "MESSAGES_SNAPSHOT",
        "TEXT_MESSAGE_START",
        "TEXT_MESSAGE_CONTENT",
        "TEXT_MESSAGE_CONTENT",
        "TEXT_MESSAGE_END",
        "RUN_FINISHED",
    ]
    started, finished = run["events"][0], run["events"][-1]
    assert (started["threadId"], started["runId"]) == ("thread-text", "r1")
    assert (finished["threadId"], finished["runId"]) == ("thread-text", "r1")
    assert finished["usage"] == [{"inputTokens": 3, "outputTokens": 2, "totalTokens": 5}]
    parley = started["metadata"]["parley"]
    assert [(m["role"], m["content"]) for m in result["messages"]] == [
        ("user", "Hi"),
        ("assistant", "Hello"),
    ]
    assert result["messages"][1]["id"] == parley["messageId"]
    convo = await live.services.store.find_conversation_by_external("alice", "thread-text")
    assert convo is not None and convo.id == parley["conversationId"]


async def test_a_tool_parley_runs_streams_its_call_and_result_then_the_answer(
    live: Live, tool_registry: ToolRegistry
) -> None:
    calls = weather(tool_registry)
    live.scripted.enqueue(
        [{"tool_call": {"name": "get_weather", "arguments": {"city": "Paris"}, "id": "call_w"}}],
        [{"text": "Sunny, 21C."}],
    )
    scenario = {"threadId": "thread-tool", "runs": [{"runId": "r1", "user": "Weather?"}]}
    [run] = (result := await http_agent(live, scenario))["runs"]
    assert calls == [{"city": "Paris"}]
    assert [k for k in kinds(run) if k != "TOOL_CALL_ARGS"] == [
        "RUN_STARTED",
        "MESSAGES_SNAPSHOT",
        "TOOL_CALL_START",
        "TOOL_CALL_END",
        "TOOL_CALL_RESULT",
        "TEXT_MESSAGE_START",
        "TEXT_MESSAGE_CONTENT",
        "TEXT_MESSAGE_END",
        "RUN_FINISHED",
    ]
    args = "".join(e["delta"] for e in run["events"] if e["type"] == "TOOL_CALL_ARGS")
    assert json.loads(args) == {"city": "Paris"}
    assert run["events"][-1]["outcome"] == {"type": "success"}
    asked, assistant, tool = result["messages"]
    assert asked["content"] == "Weather?"
    assert assistant["toolCalls"][0]["function"]["name"] == "get_weather"
    assert assistant["content"] == "Sunny, 21C."
    assert (tool["toolCallId"], json.loads(tool["content"])) == ("call_w", {"tempC": 21})


async def test_a_frontend_tool_ends_the_run_and_its_result_continues_the_conversation(
    live: Live,
) -> None:
    pick = {
        "name": "pick_color",
        "description": "Ask the person for a color",
        "parameters": {"type": "object", "properties": {"hint": {"type": "string"}}},
    }
    live.scripted.enqueue(
        [{"tool_call": {"name": "pick_color", "arguments": {"hint": "warm"}, "id": "call_f"}}],
        [{"text": "You picked red."}],
    )
    scenario = {
        "threadId": "thread-frontend",
        "runs": [
            {"runId": "r1", "user": "Pick a color", "tools": [pick]},
            {"runId": "r2", "tools": [pick], "toolResults": {"pick_color": "red"}},
        ],
    }
    first, second = (await http_agent(live, scenario))["runs"]
    assert kinds(first)[-2:] == ["TOOL_CALL_END", "RUN_FINISHED"]
    assert "TOOL_CALL_RESULT" not in kinds(first)
    assert first["events"][-1]["outcome"] == {"type": "success", "pendingToolCallIds": ["call_f"]}
    assert [t.name for t in live.scripted.requests[0].tools] == ["pick_color"]
    assert second["error"] is None and second["outcome"] == "success"
    text = "".join(e["delta"] for e in second["events"] if e["type"] == "TEXT_MESSAGE_CONTENT")
    assert text == "You picked red."
    told = [m for m in live.scripted.requests[1].messages if m.role == "tool"]
    assert [(m.tool_call_id, m.content) for m in told] == [("call_f", "red")]
    first_convo = first["events"][0]["metadata"]["parley"]["conversationId"]
    assert second["events"][0]["metadata"]["parley"]["conversationId"] == first_convo


async def test_an_approval_is_an_interrupt_and_resuming_with_approved_runs_the_tool(
    live: Live, tool_registry: ToolRegistry
) -> None:
    calls = weather(tool_registry, approval=True)
    live.scripted.enqueue(
        [{"tool_call": {"name": "get_weather", "arguments": {"city": "Oslo"}, "id": "call_a"}}],
        [{"text": "Cold."}],
    )
    scenario = {
        "threadId": "thread-approval",
        "runs": [{"runId": "r1", "user": "Weather?"}, {"runId": "r2", "approve": True}],
    }
    first, second = (await http_agent(live, scenario))["runs"]
    assert first["outcome"] == "interrupt" and "TOOL_CALL_RESULT" not in kinds(first)
    [interrupt] = first["interrupts"]
    assert interrupt["reason"] == "tool_approval" and interrupt["toolCallId"] == "call_a"
    assert interrupt["responseSchema"]["properties"]["approved"] == {"type": "boolean"}
    assert calls == [{"city": "Oslo"}]
    assert second["outcome"] == "success"
    assert kinds(second) == [
        "RUN_STARTED",
        "TOOL_CALL_RESULT",
        "TEXT_MESSAGE_START",
        "TEXT_MESSAGE_CONTENT",
        "TEXT_MESSAGE_END",
        "RUN_FINISHED",
    ]
    assert second["events"][0]["runId"] == "r2"


async def test_a_failed_run_is_run_error_and_a_refused_input_rejects_with_the_http_error(
    live: Live,
) -> None:
    live.scripted.enqueue([{"error": {"code": "ERR_PROVIDER_UNAVAILABLE", "message": "boom"}}])
    bad_tool = {"name": "bad name", "description": "spaces are not allowed"}
    scenario = {
        "threadId": "thread-error",
        "runs": [{"runId": "r1", "user": "Hi"}, {"runId": "r2", "user": "x", "tools": [bad_tool]}],
    }
    failed, refused = (await http_agent(live, scenario))["runs"]
    assert kinds(failed)[-1] == "RUN_ERROR"
    assert failed["events"][-1] == {
        "type": "RUN_ERROR",
        "message": "boom",
        "code": "ERR_PROVIDER_UNAVAILABLE",
    }
    assert refused["events"] == []
    assert refused["error"].startswith("HTTP 422: ")
    body = json.loads(refused["error"].removeprefix("HTTP 422: "))
    assert body["error"]["code"] == "ERR_VALIDATION" and "tools[0].name" in body["error"]["message"]
    assert len(live.scripted.requests) == 1


def weather(registry: ToolRegistry, *, approval: bool = False) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []

    async def get_weather(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
        calls.append(args)
        return {"tempC": 21}

    registry.register(FunctionTool("get_weather", get_weather, requires_approval=approval))
    return calls
