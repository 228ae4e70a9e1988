"""The real AI SDK clients (ai@5.0.0 and ai@6.0.0, the strictest of their lines) against a live
parley: the Node scripts in ``node/`` drive ``AbstractChat`` (what ``useChat`` wraps),
``DefaultChatTransport`` and ``readUIMessageStream``. Needs ``npm ci --prefix tests/compat/node``.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import Live, token

from parley.providers.scripted import ScriptedProvider
from parley.tools.base import FunctionTool, ToolContext
from parley.tools.registry import ToolRegistry

NODE_DIR = Path(__file__).parent / "node"
NODE = shutil.which("node")

pytestmark = [
    pytest.mark.skipif(NODE is None, reason="node is not installed"),
    pytest.mark.skipif(
        not (NODE_DIR / "node_modules" / "ai6").is_dir(),
        reason="the AI SDK clients are not installed: run npm ci --prefix tests/compat/node",
    ),
]

VERSIONS = ["ai5", "ai6"]
WEATHER_CALL = {
    "tool_call": {"name": "get_weather", "arguments": {"city": "Paris"}, "id": "call_1"}
}


async def run_node(
    script: str, version: str, live: Live, on_step: Any = None, seconds: float = 20
) -> Any:
    """Run a scenario script; ``on_step`` sees each ``{"step": ...}`` line; returns the result."""
    assert NODE is not None
    process = await asyncio.create_subprocess_exec(
        NODE,
        str(NODE_DIR / script),
        version,
        live.url,
        token("alice"),
        cwd=NODE_DIR,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    result: Any = None
    try:
        async with asyncio.timeout(seconds):
            while line := await process.stdout.readline():
                item = json.loads(line)
                if "result" in item:
                    result = item["result"]
                elif on_step is not None:
                    on_step(item)
            stderr = (await process.stderr.read()).decode()
            await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, stderr
    return result


def weather(registry: ToolRegistry, *, approval: bool) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []

    async def get_weather(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
        calls.append(args)
        return {"tempC": 21}

    registry.register(FunctionTool("get_weather", get_weather, requires_approval=approval))
    return calls


def visible(parts: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    """Each part's type and its state (tools) or text."""
    return [(p["type"], p.get("state") if "toolCallId" in p else p.get("text")) for p in parts]


@pytest.mark.parametrize("version", VERSIONS)
async def test_use_chat_streams_text_replies_into_parley_message_ids(
    live: Live, scripted: ScriptedProvider, version: str
) -> None:
    scripted.enqueue([{"text": ["Hel", "lo"]}], [{"text": "Again"}])
    result = await run_node("text.mjs", version, live)
    assert result["status"] == "ready" and result["errors"] == []
    messages = result["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant"]
    assert visible(messages[1]["parts"]) == [("step-start", None), ("text", "Hello")]
    assert visible(messages[3]["parts"]) == [("step-start", None), ("text", "Again")]
    assert messages[1]["id"].startswith("msg_") and messages[3]["id"].startswith("msg_")
    assert [m.content for m in scripted.requests[1].messages] == ["Hi", "Hello", "And again"]


@pytest.mark.parametrize("version", VERSIONS)
async def test_read_ui_message_stream_assembles_a_server_tool_call_and_the_answer(
    live: Live, scripted: ScriptedProvider, tool_registry: ToolRegistry, version: str
) -> None:
    weather(tool_registry, approval=False)
    scripted.enqueue([{"reasoning": "look it up"}, WEATHER_CALL], [{"text": "It is 21C in Paris."}])
    result = await run_node("tools.mjs", version, live)
    parts = result["message"]["parts"]
    assert visible(parts) == [
        ("step-start", None),
        ("reasoning", "look it up"),
        ("dynamic-tool", "output-available"),
        ("step-start", None),
        ("text", "It is 21C in Paris."),
    ]
    tool = parts[2]
    assert (tool["toolName"], tool["input"], tool["output"]) == (
        "get_weather",
        {"city": "Paris"},
        {"tempC": 21},
    )


@pytest.mark.parametrize("version", VERSIONS)
async def test_an_approval_round_trip_ends_in_one_assistant_message(
    live: Live, scripted: ScriptedProvider, tool_registry: ToolRegistry, version: str
) -> None:
    calls = weather(tool_registry, approval=True)
    scripted.enqueue([WEATHER_CALL], [{"text": "It is 21C in Paris."}])
    result = await run_node("approval.mjs", version, live)
    assert result["status"] == "ready" and result["errors"] == []
    asked = result["asked"][-1]["parts"]
    if version == "ai6":
        assert ("dynamic-tool", "approval-requested") in visible(asked)
    else:
        approval = next(p for p in asked if p["type"] == "data-tool-approval")
        assert approval["data"]["status"] == "pending"
    messages = result["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant"]
    assert messages[1]["id"] == result["asked"][-1]["id"]
    parts = [p for p in messages[1]["parts"] if p["type"] != "data-tool-approval"]
    assert visible(parts) == [
        ("step-start", None),
        ("dynamic-tool", "output-available"),
        ("step-start", None),
        ("text", "It is 21C in Paris."),
    ]
    assert calls == [{"city": "Paris"}]


@pytest.mark.parametrize("version", VERSIONS)
async def test_resume_stream_is_idle_without_a_run_and_replays_a_running_one(
    live: Live, scripted: ScriptedProvider, version: str
) -> None:
    scripted.enqueue([{"text": "one "}, {"wait": "go"}, {"text": "two"}])
    steps: list[dict[str, Any]] = []

    def on_step(item: dict[str, Any]) -> None:
        steps.append(item)
        if item["step"] == "resumed":
            scripted.release("go")

    result = await run_node("resume.mjs", version, live, on_step)
    # 204: nothing to resume (ai@5.0.0 leaves its status at "submitted" then; later ones "ready")
    assert steps[0]["messages"] == 0 and steps[0]["status"] in ("ready", "submitted")
    assert steps[1]["seen"][-1] == "text-delta"
    assert steps[2] == {"step": "resumed", "status": 200}
    assert result["status"] == "ready" and result["errors"] == []
    assert [m["role"] for m in result["messages"]] == ["user", "assistant"]
    assert visible(result["messages"][1]["parts"]) == [("step-start", None), ("text", "one two")]
