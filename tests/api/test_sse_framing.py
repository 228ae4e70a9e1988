"""Every SSE door ends its lines with "\\n" alone, so a reader that splits on "\\n" and compares
`data: [DONE]` (the EditorChat client does) sees its end."""

from __future__ import annotations

from typing import Any

import pytest
from tests.conftest import Live

from parley.providers.scripted import ScriptedProvider


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"enable_chat_v2": True}


async def _doors(live: Live) -> list[tuple[str, str, dict[str, Any]]]:
    async with live.client() as http:
        cid = (await http.post("/api/conversations", json={})).json()["id"]
        sid = (await http.post("/sessions", json={})).json()["session_id"]
    ui = {
        "id": "chat-1",
        "messages": [{"id": "u1", "role": "user", "parts": [{"type": "text", "text": "hi"}]}],
        "trigger": "submit-message",
    }
    return [
        ("native", f"/api/conversations/{cid}/messages", {"content": "hi"}),
        ("vercel", "/api/chat", ui),
        ("playground", "/mcp/chat-v2", {**ui, "id": "chat-2"}),
        (
            "openai",
            "/v1/chat/completions",
            {
                "model": "scripted/demo",
                "stream": True,
                "messages": [{"role": "user", "content": "hi"}],
            },
        ),
        ("sessions", f"/sessions/{sid}/chat", {"message": "hi"}),
        ("todo", "/api/alice/chat", {"message": "hi"}),
    ]


async def test_every_sse_door_frames_its_lines_with_a_bare_newline(
    live: Live, scripted: ScriptedProvider
) -> None:
    doors = await _doors(live)
    scripted.enqueue(*[[{"text": "Hello."}] for _ in doors])
    async with live.client() as http:
        for name, path, body in doors:
            response = await http.post(path, json=body, headers={"accept": "text/event-stream"})
            assert response.status_code == 200, (name, response.text[:300])
            assert response.headers["content-type"].startswith("text/event-stream"), name
            assert "\r" not in response.text, name
            lines = response.text.split("\n")
            assert any(line.startswith("data: ") for line in lines), name
            if name in ("native", "vercel", "playground", "openai"):
                assert "data: [DONE]" in lines, name
