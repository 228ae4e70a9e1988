"""A run that runs too long ends with ERR_TIMEOUT; attachments a model cannot take are refused."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from tests.conftest import Live
from tests.support.sse import collect, kinds

from parley.providers.scripted import ScriptedProvider


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"run_timeout": 0.5}


async def test_a_run_past_its_timeout_fails_with_err_timeout_and_keeps_its_text(
    live: Live, scripted: ScriptedProvider
) -> None:
    scripted.enqueue([{"text": "started "}, {"wait": "never"}])
    convo = await live.services.store.create_conversation("alice")
    async with live.client() as http:
        _, events = await collect(
            http, "POST", f"/api/conversations/{convo.id}/messages", json_body={"content": "go"}
        )
    assert kinds(events) == ["start", "content", "error", "[DONE]"]
    assert events[-2].data["error"]["code"] == "ERR_TIMEOUT"
    message = await live.services.store.get_message("alice", convo.id, events[0].data["message_id"])
    assert (message.status, message.text) == ("error", "started ")
    assert scripted.closed_streams == 1


async def test_an_image_for_a_model_without_vision_is_refused_and_nothing_is_written(
    live: Live, scripted: ScriptedProvider
) -> None:
    scripted.supports_images = False
    convo = await live.services.store.create_conversation("alice")
    image = {"type": "image", "media_type": "image/png", "data": base64.b64encode(b"png").decode()}
    async with live.client() as http:
        response = await http.post(
            f"/api/conversations/{convo.id}/messages",
            json={"content": "what is this?", "attachments": [image]},
        )
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "ERR_VALIDATION"
        assert (await http.get(f"/api/conversations/{convo.id}")).json()["messages"] == []


async def test_a_text_file_attachment_reaches_the_model(
    live: Live, scripted: ScriptedProvider
) -> None:
    scripted.enqueue([{"text": "read it"}])
    convo = await live.services.store.create_conversation("alice")
    note = {
        "type": "file",
        "name": "notes.txt",
        "media_type": "text/plain",
        "data": base64.b64encode(b"the secret word is heron").decode(),
    }
    async with live.client() as http:
        response = await http.post(
            f"/api/conversations/{convo.id}/messages",
            json={"content": "summarise", "attachments": [note], "stream": False},
        )
    assert response.status_code == 200
    sent = scripted.requests[0].messages[-1].content
    assert isinstance(sent, str) and "the secret word is heron" in sent and "notes.txt" in sent
