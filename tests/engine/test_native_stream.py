"""A user message becomes a run whose native SSE stream carries the reply; persistence rules."""

from __future__ import annotations

import asyncio

import pytest
from tests.conftest import Live
from tests.support.sse import collect, kinds, text

from parley.providers.scripted import ScriptedProvider


async def _conversation(live: Live) -> str:
    async with live.client() as http:
        return str((await http.post("/api/conversations", json={})).json()["id"])


async def test_reply_streams_in_many_chunks_and_is_stored_with_usage(
    live: Live, scripted: ScriptedProvider
) -> None:
    scripted.enqueue(
        [
            {"text": ["Hel", "lo", ", ", "wor", "ld"]},
            {"usage": {"prompt_tokens": 7, "completion_tokens": 5}},
        ]
    )
    cid = await _conversation(live)
    async with live.client() as http:
        response, events = await collect(
            http, "POST", f"/api/conversations/{cid}/messages", json_body={"content": "Hi there"}
        )
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache, no-transform"
        assert response.headers["x-accel-buffering"] == "no"
        assert response.headers["x-chat-session-id"] == cid
        run_id = response.headers["x-run-id"]
        assert kinds(events) == ["start"] + ["content"] * 5 + ["done", "[DONE]"]
        assert [int(e.id) for e in events[:-1]] == sorted(int(e.id) for e in events[:-1])
        assert text(events) == "Hello, world"
        start, done = events[0].data, events[-2].data
        assert start["run_id"] == run_id and start["conversation_id"] == cid
        assert done == {
            "type": "done",
            "message_id": start["message_id"],
            "finish_reason": "stop",
            "tokensUsed": {"prompt": 7, "completion": 5, "total": 12},
        }
        convo = (await http.get(f"/api/conversations/{cid}")).json()
    user, assistant = convo["messages"]
    assert user["id"] == start["user_message_id"]
    assert user["parts"] == [{"type": "text", "text": "Hi there"}]
    assert assistant["parent_id"] == user["id"]
    assert assistant["status"] == "complete"
    assert [p for p in assistant["parts"] if p["type"] == "text"] == [
        {"type": "text", "text": "Hello, world"}
    ]
    assert assistant["usage"] == {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12}
    assert convo["usage"]["total_tokens"] == 12
    assert convo["title"] == "Hi there"
    assert scripted.requests[0].messages[-1].content == "Hi there"
    scripted.assert_done()


async def test_an_error_mid_stream_ends_cleanly_and_keeps_the_partial_reply(
    live: Live, scripted: ScriptedProvider
) -> None:
    scripted.enqueue(
        [
            {"text": ["partial ", "answer"]},
            {"error": {"code": "ERR_PROVIDER_UNAVAILABLE", "message": "upstream fell over"}},
        ]
    )
    cid = await _conversation(live)
    async with live.client() as http:
        _, events = await collect(
            http, "POST", f"/api/conversations/{cid}/messages", json_body={"content": "go"}
        )
        assert kinds(events) == ["start", "content", "content", "error", "[DONE]"]
        assert events[-2].data["error"] == {
            "code": "ERR_PROVIDER_UNAVAILABLE",
            "message": "upstream fell over",
        }
        convo = (await http.get(f"/api/conversations/{cid}")).json()
    assistant = convo["messages"][-1]
    assert assistant["status"] == "error"
    assert assistant["parts"][-1] == {"type": "text", "text": "partial answer"}


async def test_cancel_stops_the_model_and_keeps_the_partial_reply_as_cancelled(
    live: Live, scripted: ScriptedProvider
) -> None:
    scripted.enqueue([{"text": "before the wait "}, {"wait": "never"}, {"text": "never sent"}])
    cid = await _conversation(live)
    async with live.client() as http:
        stream = asyncio.create_task(
            collect(http, "POST", f"/api/conversations/{cid}/messages", json_body={"content": "go"})
        )
        await scripted.wait_for_requests(1)
        run = await live.services.store.active_run("alice", cid)
        assert run is not None
        async with asyncio.timeout(1):
            cancelled = await http.post(f"/api/runs/{run.id}/cancel")
        assert cancelled.json() == {"run_id": run.id, "status": "cancelled"}
        _, events = await asyncio.wait_for(stream, 5)
    assert kinds(events) == ["start", "content", "done", "[DONE]"]
    assert events[-2].data["finish_reason"] == "cancelled"
    assert scripted.closed_streams == 1
    message = await live.services.store.get_message("alice", cid, run.message_id)
    assert message.status == "cancelled"
    assert message.text == "before the wait "


async def test_a_disconnected_client_resumes_from_last_event_id_with_no_gap_or_duplicate(
    live: Live, scripted: ScriptedProvider
) -> None:
    scripted.enqueue([{"text": ["a", "b", "c"]}, {"wait": "go"}, {"text": ["d", "e"]}])
    cid = await _conversation(live)
    async with live.client() as http:
        first, seen = await collect(
            http,
            "POST",
            f"/api/conversations/{cid}/messages",
            json_body={"content": "x"},
            stop_after="content",
        )
        run_id = first.headers["x-run-id"]
        assert kinds(seen) == ["start", "content"]
        last_id = seen[-1].id
        resumed = asyncio.create_task(
            collect(http, "GET", f"/api/runs/{run_id}/events", headers={"Last-Event-ID": last_id})
        )
        await asyncio.sleep(0.05)
        scripted.release("go")
        _, rest = await asyncio.wait_for(resumed, 5)
        _, full = await collect(http, "GET", f"/api/runs/{run_id}/events")
    all_events = seen + rest
    assert [(e.id, e.data) for e in all_events] == [(e.id, e.data) for e in full]
    ids = [int(e.id) for e in all_events if e.data != "[DONE]"]
    assert ids == sorted(set(ids))
    assert text(all_events) == "abcde"
    assert kinds(rest)[-2:] == ["done", "[DONE]"]


async def test_the_run_goes_on_when_its_client_disconnects(
    live: Live, scripted: ScriptedProvider
) -> None:
    scripted.enqueue([{"text": "one "}, {"wait": "go"}, {"text": "two"}])
    cid = await _conversation(live)
    async with live.client() as http:
        first, _ = await collect(
            http,
            "POST",
            f"/api/conversations/{cid}/messages",
            json_body={"content": "x"},
            stop_after="content",
        )
    scripted.release("go")
    run_id = first.headers["x-run-id"]
    async with live.client() as http:
        _, replay = await collect(http, "GET", f"/api/runs/{run_id}/events")
    assert text(replay) == "one two"
    assert kinds(replay)[-2:] == ["done", "[DONE]"]


async def test_json_reply_when_the_client_asks_for_json(
    live: Live, scripted: ScriptedProvider
) -> None:
    scripted.enqueue([{"text": "plain answer"}])
    cid = await _conversation(live)
    async with live.client() as http:
        response = await http.post(
            f"/api/conversations/{cid}/messages",
            json={"content": "q"},
            headers={"Accept": "application/json"},
        )
    body = response.json()
    assert response.status_code == 200
    assert body["message"]["status"] == "complete"
    assert body["message"]["parts"][-1] == {"type": "text", "text": "plain answer"}


async def test_regenerate_and_edit_make_branches_and_switch_the_active_one(
    live: Live, scripted: ScriptedProvider
) -> None:
    scripted.enqueue([{"text": "first"}], [{"text": "second"}], [{"text": "third"}])
    cid = await _conversation(live)
    async with live.client() as http:
        sent = (
            await http.post(
                f"/api/conversations/{cid}/messages", json={"content": "q", "stream": False}
            )
        ).json()
        first_id = sent["message"]["id"]
        regen = (
            await http.post(
                f"/api/conversations/{cid}/messages/{first_id}/regenerate", json={"stream": False}
            )
        ).json()
        assert regen["user_message_id"] is None
        convo = (await http.get(f"/api/conversations/{cid}")).json()
        assert [m["parts"][-1]["text"] for m in convo["messages"]] == ["q", "second"]
        assert convo["messages"][1]["siblings"] == [first_id, regen["message"]["id"]]
        edited = (
            await http.put(
                f"/api/conversations/{cid}/messages/{sent['user_message_id']}",
                json={"content": "q2", "stream": False},
            )
        ).json()
        convo = (await http.get(f"/api/conversations/{cid}")).json()
        assert [m["parts"][-1]["text"] for m in convo["messages"]] == ["q2", "third"]
        assert convo["messages"][0]["id"] == edited["user_message_id"]
        back = (
            await http.post(f"/api/conversations/{cid}/branch", json={"message_id": first_id})
        ).json()
        assert [m["parts"][-1]["text"] for m in back["messages"]] == ["q", "first"]
    assert [r.messages[-1].content for r in scripted.requests] == ["q", "q", "q2"]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"content": "   "}, "ERR_VALIDATION"),
        ({"content": "x", "model": "nosuch/model"}, "ERR_INVALID_MODEL"),
        (
            {"content": "x", "attachments": [{"media_type": "image/png", "data": "A" * 8_000_000}]},
            "ERR_VALIDATION",
        ),
        ({"content": 5}, "ERR_VALIDATION"),
        ({"content": "x", "unknown": 1, "attachments": "nope"}, "ERR_VALIDATION"),
    ],
)
async def test_bad_messages_get_the_contract_error_and_nothing_is_written(
    live: Live, body: dict[str, object], code: str
) -> None:
    cid = await _conversation(live)
    async with live.client() as http:
        response = await http.post(f"/api/conversations/{cid}/messages", json=body)
        assert 400 <= response.status_code < 500
        assert response.json()["error"]["code"] == code
        assert response.headers["x-error-code"] == code
        convo = (await http.get(f"/api/conversations/{cid}")).json()
    assert convo["messages"] == []


async def test_unknown_conversation_is_a_404(live: Live) -> None:
    async with live.client() as http:
        response = await http.post("/api/conversations/conv_nope/messages", json={"content": "x"})
    assert response.status_code == 404


@pytest.mark.parametrize("settings_overrides", [{"run_ttl": 0.0}])
async def test_resuming_a_run_the_hub_forgot_past_the_replay_ends_with_done(
    live: Live, scripted: ScriptedProvider
) -> None:
    scripted.enqueue([{"text": [f"t{i} " for i in range(10)]}])
    cid = await _conversation(live)
    async with live.client() as http:
        _, seen = await collect(
            http, "POST", f"/api/conversations/{cid}/messages", json_body={"content": "x"}
        )
        run_id, last_id = seen[0].data["run_id"], seen[-2].id
        await live.services.runs.wait(run_id)
        assert not await live.services.runs.hub.exists(run_id)  # forgotten: replayed from the store
        _, rest = await asyncio.wait_for(
            collect(http, "GET", f"/api/runs/{run_id}/events", headers={"Last-Event-ID": last_id}),
            5,
        )
    assert kinds(rest) == ["done", "[DONE]"]
    assert int(rest[0].id) > int(last_id)
