"""Session chat: ``POST /sessions`` and ``POST /sessions/{id}/chat`` with chunk/complete/error,
in the seed's error codes; list, read and delete; its client with no token (``PARLEY_AUTH=none``)."""

from __future__ import annotations

import json

import pytest
from tests.conftest import Live
from tests.support.sse import collect, kinds

from parley.api.routes.sessions import SeedSessionSSE
from parley.providers.openai import OpenAIProvider
from parley.providers.scripted import ScriptedProvider


async def test_a_session_chat_streams_chunks_then_complete(
    live: Live, scripted: ScriptedProvider
) -> None:
    scripted.enqueue([{"text": ["Hel", "lo"]}], [{"text": "again"}])
    async with live.client() as http:
        created = await http.post("/sessions", json={})
        assert created.status_code == 201
        session = created.json()["session_id"]
        response, events = await collect(
            http, "POST", f"/sessions/{session}/chat", json_body={"message": "Hi"}
        )
        assert response.headers["x-chat-session-id"] == session
        assert kinds(events) == ["chunk", "chunk", "complete"]
        assert [e.data for e in events[:2]] == [
            {"type": "chunk", "content": "Hel"},
            {"type": "chunk", "content": "lo"},
        ]
        complete = events[-1].data
        assert (complete["type"], complete["content"], complete["session_id"]) == (
            "complete",
            "Hello",
            session,
        )
        assert all(e.id == "" for e in events)
        _, again = await collect(
            http, "POST", f"/sessions/{session}/chat", json_body={"message": "More"}
        )
    assert again[-1].data["content"] == "again"
    assert [m.content for m in scripted.requests[1].messages] == ["Hi", "Hello", "More"]
    convo = await live.services.store.get_conversation("alice", session)
    assert convo.metadata_ == {"source": "sessions"}


async def test_a_failure_is_an_error_event(live: Live, scripted: ScriptedProvider) -> None:
    scripted.enqueue([{"error": {"code": "ERR_PROVIDER_UNAVAILABLE", "message": "down"}}])
    async with live.client() as http:
        session = (await http.post("/sessions")).json()["session_id"]
        _, events = await collect(
            http, "POST", f"/sessions/{session}/chat", json_body={"message": "x"}
        )
    assert kinds(events) == ["error"]
    assert events[0].data == {"type": "error", "error": {"message": "down", "code": "AI_ERROR"}}


def test_a_stream_that_breaks_after_its_first_byte_ends_with_stream_error() -> None:
    encoder = SeedSessionSSE(session_id="conv_1", run_id="run_1")
    (frame,) = encoder.on_error(RuntimeError("a bug's text"))
    assert (frame.event, json.loads(str(frame.data))) == (
        "error",
        {"type": "error", "error": {"message": "the stream failed", "code": "STREAM_ERROR"}},
    )


async def test_an_unknown_or_foreign_session_is_a_404_not_found(
    live: Live, scripted: ScriptedProvider
) -> None:
    async with live.client("bob") as bob:
        foreign = (await bob.post("/sessions")).json()["session_id"]
    async with live.client() as http:
        for session in ("conv_nope", foreign):
            for method, path, body in (
                ("POST", f"/sessions/{session}/chat", {"message": "x"}),
                ("GET", f"/sessions/{session}", None),
                ("DELETE", f"/sessions/{session}", None),
            ):
                response = await http.request(method, path, json=body)
                assert response.status_code == 404, (method, path)
                assert response.json()["error"]["code"] == "NOT_FOUND"
                assert response.headers["x-error-code"] == "NOT_FOUND"
        empty = await http.post(f"/sessions/{foreign}/chat", json={"message": ""})
    assert empty.status_code == 422
    async with live.client("bob") as bob:
        assert (await bob.get(f"/sessions/{foreign}")).status_code == 200  # still there


async def test_sessions_are_listed_read_with_their_messages_and_deleted(
    live: Live, scripted: ScriptedProvider
) -> None:
    scripted.enqueue([{"text": "Hello"}])
    async with live.client() as http:
        session = (await http.post("/sessions", json={"title": "mine"})).json()["session_id"]
        await collect(http, "POST", f"/sessions/{session}/chat", json_body={"message": "Hi"})
        listed = (await http.get("/sessions")).json()
        read = (await http.get(f"/sessions/{session}")).json()
        deleted = await http.delete(f"/sessions/{session}")
        gone = await http.get(f"/sessions/{session}")
        after = (await http.get("/sessions")).json()
    async with live.client("bob") as bob:
        bobs = (await bob.get("/sessions")).json()
    assert [(s["session_id"], s["title"]) for s in listed["sessions"]] == [(session, "mine")]
    assert (read["session_id"], read["title"]) == (session, "mine")
    assert [(m["role"], m["content"]) for m in read["messages"]] == [
        ("user", "Hi"),
        ("assistant", "Hello"),
    ]
    assert deleted.status_code == 204
    assert gone.status_code == 404
    assert after["sessions"] == [] and bobs["sessions"] == []


async def test_a_missing_api_key_is_api_key_missing_in_a_json_500_before_any_stream(
    live: Live, scripted: ScriptedProvider
) -> None:
    keyless = OpenAIProvider(base_url=None, api_key=None)  # api.openai.com, never reached
    live.services.providers.register("openai", keyless, default_model="gpt-4o-mini")
    async with live.client() as http:
        session = (await http.post("/sessions")).json()["session_id"]
        response = await http.post(
            f"/sessions/{session}/chat", json={"message": "Hello", "model": "openai/gpt-4o-mini"}
        )
        read = (await http.get(f"/sessions/{session}")).json()
        convo = (await http.post("/api/conversations", json={"model": "openai/gpt-4o-mini"})).json()
        own = await http.post(f"/api/conversations/{convo['id']}/messages", json={"content": "Hi"})
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-error-code"] == "API_KEY_MISSING"
    assert response.json()["error"] == {
        "code": "API_KEY_MISSING",
        "message": "openai has no API key: set OPENAI_API_KEY or [providers.openai] api_key",
    }
    assert read["messages"] == []  # nothing was written
    assert scripted.requests == []
    assert (own.status_code, own.json()["error"]["code"]) == (503, "ERR_API_KEY_MISSING")


@pytest.mark.parametrize("settings_overrides", [{"auth": "none"}])
async def test_with_auth_none_the_session_client_chats_without_a_token(
    live: Live, scripted: ScriptedProvider
) -> None:
    scripted.enqueue([{"text": ["Hel", "lo"]}])
    async with live.client(None) as http:
        created = await http.post("/sessions", json={})
        session = created.json()["session_id"]
        response, events = await collect(
            http, "POST", f"/sessions/{session}/chat", json_body={"message": "Hello"}
        )
        listed = (await http.get("/sessions")).json()
    assert created.status_code == 201 and response.status_code == 200
    assert kinds(events) == ["chunk", "chunk", "complete"]
    assert [s["session_id"] for s in listed["sessions"]] == [session]
    convo = await live.services.store.get_conversation("local", session)
    assert convo.user_id == "local"
