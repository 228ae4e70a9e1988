"""EditorChat's own request bodies: keys parley does not know are ignored (known keys stay
strict), `messageId` on fork, and its attachment shape `{name, type, content | url}`."""

from __future__ import annotations

import base64

from tests.conftest import Live

from parley.providers.scripted import ScriptedProvider

NOTE = base64.b64encode(b"the word is heron").decode()
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n").decode()


async def test_its_extra_keys_are_ignored_on_create_send_and_fork(
    live: Live, scripted: ScriptedProvider
) -> None:
    scripted.enqueue([{"text": "Hi."}])
    async with live.client() as http:
        created = await http.post(
            "/api/conversations", json={"title": "ed", "orgId": "org_1", "projectId": "p_1"}
        )
        assert created.status_code == 201, created.text
        cid = created.json()["id"]
        sent = await http.post(
            f"/api/conversations/{cid}/messages",
            json={"content": "hello", "enableStreaming": True, "stream": False},
        )
        assert sent.status_code == 200, sent.text
        reply_id = sent.json()["message"]["id"]
        forked = await http.post(f"/api/conversations/{cid}/fork", json={"messageId": reply_id})
        assert forked.status_code == 201, forked.text
        assert [m["id"] for m in forked.json()["messages"]][-1] != reply_id
        assert len(forked.json()["messages"]) == 2


async def test_known_keys_stay_strict(live: Live) -> None:
    async with live.client() as http:
        cid = (await http.post("/api/conversations", json={})).json()["id"]
        bad = await http.post(
            f"/api/conversations/{cid}/messages",
            json={"content": "hi", "temperature": "hot", "enableStreaming": True},
        )
    assert bad.status_code in (400, 422)
    assert bad.json()["error"]["code"] == "ERR_VALIDATION"


async def test_its_attachment_shape_takes_the_media_type_from_type_data_url_or_name(
    live: Live, scripted: ScriptedProvider
) -> None:
    scripted.enqueue([{"text": "Read them."}])
    attachments = [
        {"name": "notes.txt", "type": "text/plain", "content": NOTE},
        {"name": "pic", "type": "image", "url": f"data:image/png;base64,{PNG}"},
        {"name": "more.txt", "content": f"data:text/plain;base64,{NOTE}"},
        {"name": "readme.md", "content": NOTE},
    ]
    async with live.client() as http:
        cid = (await http.post("/api/conversations", json={})).json()["id"]
        sent = await http.post(
            f"/api/conversations/{cid}/messages",
            json={"content": "look", "attachments": attachments, "stream": False},
        )
        assert sent.status_code == 200, sent.text
        messages = (await http.get(f"/api/conversations/{cid}")).json()["messages"]
    files = [p for p in messages[0]["parts"] if p["type"] == "file"]
    assert [(f["filename"], f["mediaType"]) for f in files] == [
        ("notes.txt", "text/plain"),
        ("pic", "image/png"),
        ("more.txt", "text/plain"),
        ("readme.md", "text/markdown"),
    ]
    assert all(f["url"].startswith(f"data:{f['mediaType']};base64,") for f in files)
    assert "the word is heron" in str(scripted.requests[0].messages[-1].content)
