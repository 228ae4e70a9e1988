"""What parley takes from an MCP tool's annotations: only an explicit ``destructiveHint: true``
makes a tool ask under the default policy, and a read-only tool never does."""

from __future__ import annotations

import pytest
from mcp.types import ToolAnnotations

from parley.tools.mcp_values import Hints, tool_hints


@pytest.mark.parametrize(
    ("annotations", "hints"),
    [
        (None, Hints(read_only=False, destructive=False)),
        (ToolAnnotations(), Hints(read_only=False, destructive=False)),
        (ToolAnnotations(readOnlyHint=False), Hints(read_only=False, destructive=False)),
        (ToolAnnotations(destructiveHint=True), Hints(read_only=False, destructive=True)),
        (
            ToolAnnotations(readOnlyHint=True, destructiveHint=True),
            Hints(read_only=True, destructive=False),
        ),
        (ToolAnnotations(readOnlyHint=True), Hints(read_only=True, destructive=False)),
    ],
)
def test_only_an_explicit_destructive_hint_on_a_tool_that_writes_is_destructive(
    annotations: ToolAnnotations | None, hints: Hints
) -> None:
    assert tool_hints(annotations) == hints
