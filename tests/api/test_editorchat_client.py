"""EditorChat's own client: its request bodies (keys parley does not know are ignored, known
keys stay strict, `messageId` on fork, its attachment shape `{name, type, content | url}`) and
its SSE readers, which take unnamed `data:` events whose JSON has a `type`."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
from httpx_sse import aconnect_sse
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


async def editorchat_reader(response: httpx.Response) -> tuple[list[dict[str, Any]], bool]:
    """EditorChat's fetch reader as its spec shows it: the bytes decoded as they come, split on
    "\n", the rest of a line kept for the next chunk; a `data: ` line is `[DONE]` (the end) or
    JSON with a `type`; an `error` or `done` event also ends it. Every other line is skipped."""
    events: list[dict[str, Any]] = []
    buffer = ""
    async for chunk in response.aiter_text():
        buffer += chunk
        *lines, buffer = buffer.split("\n")
        for line in lines:
            if not line.startswith("data: "):
                continue
            if line == "data: [DONE]":
                return events, True
            event = json.loads(line[len("data: ") :])
            assert isinstance(event.get("type"), str), line
            events.append(event)
            if event["type"] in ("done", "error"):
                return events, True
    return events, False


async def on_message_only(http: httpx.AsyncClient, url: str, body: Any) -> list[Any]:
    """A plain EventSource with only `onmessage` set: it is called for unnamed events alone
    (httpx-sse follows the EventSource parsing rules; an unnamed event is a `message`)."""
    seen: list[Any] = []
    async with aconnect_sse(http, "POST", url, json=body) as source:
        assert source.response.status_code == 200
        async for sse in source.aiter_sse():
            if sse.event == "message" and sse.data:
                seen.append(sse.data if sse.data == "[DONE]" else json.loads(sse.data))
    return seen


async def test_its_fetch_reader_reads_a_whole_streamed_reply(
    live: Live, scripted: ScriptedProvider
) -> None:
    scripted.enqueue([{"text": ["The heron ", "waits ", "by the water."]}])
    async with live.client() as http:
        cid = (await http.post("/api/conversations", json={"title": "ed"})).json()["id"]
        body = {"content": "hello", "enableStreaming": True}
        async with http.stream("POST", f"/api/conversations/{cid}/messages", json=body) as response:
            assert response.status_code == 200
            events, ended = await editorchat_reader(response)
    assert ended
    assert [e["type"] for e in events] == ["start", "content", "content", "content", "done"]
    text = "".join(e["content"] for e in events if e["type"] == "content")
    assert text == "The heron waits by the water."
    assert events[-1]["finish_reason"] == "stop"


async def test_an_eventsource_with_only_onmessage_sees_every_event_after_an_ok_comment(
    live: Live, scripted: ScriptedProvider
) -> None:
    scripted.enqueue(
        [{"text": "Hi."}],
        [{"text": "Hi."}],
        [{"error": {"code": "ERR_PROVIDER_UNAVAILABLE", "message": "down"}}],
    )
    async with live.client() as http:
        cid = (await http.post("/api/conversations", json={})).json()["id"]
        url = f"/api/conversations/{cid}/messages"
        body = {"content": "hello", "enableStreaming": True}
        raw = await http.post(url, json=body)
        seen = await on_message_only(http, url, body)
        failed = await on_message_only(http, url, body)
    assert raw.text.startswith(": ok\n\n")
    assert "\nevent:" not in raw.text
    assert [e if e == "[DONE]" else e["type"] for e in seen] == [
        *("start", "content", "done", "[DONE]")
    ]
    assert seen[1]["content"] == "Hi."
    assert failed[0]["type"] == "start"
    assert failed[-2:] == [
        {"type": "error", "error": {"code": "ERR_PROVIDER_UNAVAILABLE", "message": "down"}},
        "[DONE]",
    ]


async def test_parleys_own_clients_keep_the_named_events(
    live: Live, scripted: ScriptedProvider
) -> None:
    scripted.enqueue([{"text": "Hi."}])
    async with live.client() as http:
        cid = (await http.post("/api/conversations", json={})).json()["id"]
        url = f"/api/conversations/{cid}/messages"
        raw = await http.post(url, json={"content": "hello"})
    assert raw.text.startswith("id: ")
    frames = [f for f in raw.text.split("\n\n") if f.startswith("id: ")]
    assert [f.split("\n")[1] for f in frames] == ["event: start", "event: content", "event: done"]
