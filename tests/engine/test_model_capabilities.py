"""A model that cannot call tools is offered none, whatever the profile: it answers in text."""

from __future__ import annotations

from typing import Any

import pytest
from tests.conftest import Live
from tests.support.sse import kinds
from tests.tools.conftest import conversation, send

from parley.providers.scripted import ScriptedProvider


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"models": {"scripted/demo": {"tools": False}}}


@pytest.fixture
def tool_registry() -> None:
    return None  # the built-in todo tools, as `parley serve` has them


@pytest.mark.parametrize("profile", [None, "generalist", "todo"])
async def test_a_model_without_tool_calling_is_offered_no_tools_by_any_profile(
    live: Live, scripted: ScriptedProvider, profile: str | None
) -> None:
    assert any(t.name == "delete_task" for t in live.tools.all())
    scripted.enqueue([{"text": "The capital of France is Paris."}])
    cid = await conversation(live, **({"profile": profile} if profile else {}))
    _, events = await send(live, cid, "What is the capital of France?")
    assert scripted.requests[0].tools == []
    assert kinds(events) == ["start", "content", "done", "[DONE]"]
