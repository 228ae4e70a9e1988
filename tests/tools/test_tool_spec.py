"""What the model is told about a tool is built once per tool, and again when the tool changes."""

from __future__ import annotations

from typing import Any

from parley.tools.base import FunctionTool, ToolContext


async def _noop(arguments: dict[str, Any], context: ToolContext) -> str:
    return "ok"


def test_the_spec_is_built_once_and_again_when_the_tool_changes() -> None:
    schema = {"type": "object", "properties": {"q": {"type": "string"}}}
    tool = FunctionTool("lookup", _noop, description="find things", input_schema=schema)
    first = tool.spec()
    assert tool.spec() is first
    assert (first.name, first.description, first.parameters) == ("lookup", "find things", schema)

    tool.description = "find things, faster"
    assert tool.spec().description == "find things, faster"
    tool.input_schema = {"type": "object"}
    assert tool.spec().parameters == {"type": "object"}
    assert tool == FunctionTool(
        "lookup", _noop, description="find things, faster", input_schema={"type": "object"}
    )  # the cache is not a field
