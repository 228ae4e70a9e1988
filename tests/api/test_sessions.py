"""Session chat: ``POST /sessions`` and ``POST /sessions/{id}/chat`` with chunk/complete/error."""

from __future__ import annotations

from tests.conftest import Live
from tests.support.sse import collect, kinds

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
    assert events[0].data == {
        "type": "error",
        "error": {"message": "down", "code": "ERR_PROVIDER_UNAVAILABLE"},
    }


async def test_an_unknown_or_foreign_session_is_a_404(
    live: Live, scripted: ScriptedProvider
) -> None:
    async with live.client("bob") as bob:
        foreign = (await bob.post("/sessions")).json()["session_id"]
    async with live.client() as http:
        for session in ("conv_nope", foreign):
            response = await http.post(f"/sessions/{session}/chat", json={"message": "x"})
            assert response.status_code == 404
            assert response.json()["error"]["code"] == "ERR_NOT_FOUND"
        empty = await http.post(f"/sessions/{foreign}/chat", json={"message": ""})
    assert empty.status_code == 422
