"""The Vercel AI SDK door and the chat playground, driven over HTTP with raw bodies."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from unittest.mock import ANY

import httpx
import pytest
from tests.conftest import Live

from parley.providers.scripted import ScriptedProvider
from parley.tools.base import FunctionTool, ToolContext
from parley.tools.registry import ToolRegistry

V6 = {"X-Parley-AI-SDK": "6"}


def user_message(text: str, ident: str = "u1") -> dict[str, Any]:
    return {"id": ident, "role": "user", "parts": [{"type": "text", "text": text}]}


def body(*messages: dict[str, Any], chat: str = "chat-1", **extra: Any) -> dict[str, Any]:
    return {"id": chat, "messages": list(messages), "trigger": "submit-message", **extra}


async def ui(
    http: httpx.AsyncClient,
    payload: dict[str, Any] | None,
    *,
    url: str = "/api/chat",
    headers: dict[str, str] | None = None,
    until: str | None = None,
) -> tuple[httpx.Response, list[Any]]:
    """Every chunk of a UI message stream (or up to the first of type ``until``)."""
    chunks: list[Any] = []
    method = "POST" if payload is not None else "GET"
    async with http.stream(method, url, json=payload, headers=headers) as response:
        if response.status_code != 200:
            await response.aread()
            return response, chunks
        async for line in response.aiter_lines():
            if not line.startswith("data: "):
                assert line == "" or line.startswith(":"), line
                continue
            raw = line.removeprefix("data: ")
            chunks.append(raw if raw == "[DONE]" else json.loads(raw))
            if until is not None and chunks[-1] != "[DONE]" and chunks[-1]["type"] == until:
                break
    return response, chunks


def types(chunks: list[Any]) -> list[str]:
    return [c if c == "[DONE]" else c["type"] for c in chunks]


def text(chunks: list[Any]) -> str:
    return "".join(c["delta"] for c in chunks if c != "[DONE]" and c["type"] == "text-delta")


def weather_tool(registry: ToolRegistry, *, approval: bool = True) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []

    async def get_weather(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
        calls.append(args)
        return {"tempC": 21}

    registry.register(
        FunctionTool(
            "get_weather",
            get_weather,
            input_schema={"type": "object", "properties": {"city": {"type": "string"}}},
            requires_approval=approval,
        )
    )
    return calls


WEATHER_CALL = {
    "tool_call": {"name": "get_weather", "arguments": {"city": "Paris"}, "id": "call_1"}
}


async def test_a_new_message_streams_the_reply_and_the_chat_id_names_a_conversation(
    live: Live, scripted: ScriptedProvider
) -> None:
    scripted.enqueue(
        [{"text": ["Hel", "lo"]}, {"usage": {"prompt_tokens": 4, "completion_tokens": 2}}],
        [{"text": "again"}],
    )
    async with live.client() as http:
        response, chunks = await ui(http, body(user_message("Hi")))
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["x-vercel-ai-ui-message-stream"] == "v1"
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-accel-buffering"] == "no"
        message_id = chunks[0]["messageId"]
        assert chunks == [
            {"type": "start", "messageId": message_id},
            {"type": "start-step"},
            {"type": "text-start", "id": "text_1"},
            {"type": "text-delta", "id": "text_1", "delta": "Hel"},
            {"type": "text-delta", "id": "text_1", "delta": "lo"},
            {"type": "text-end", "id": "text_1"},
            {"type": "finish-step"},
            {
                "type": "finish",
                "messageMetadata": {
                    "usage": {"inputTokens": 4, "outputTokens": 2, "totalTokens": 6}
                },
            },
            "[DONE]",
        ]
        # the client sends only its newest message: the stored history is the truth
        _, second = await ui(http, body(user_message("More", "u2")))
        assert text(second) == "again"
    convo = await live.services.store.find_conversation_by_external("alice", "chat-1")
    assert convo is not None and convo.metadata_ == {"source": "vercel"}
    branch = await live.services.store.branch("alice", convo.id, leaf_id=convo.active_leaf_id)
    assert [(m.role, m.text) for m in branch] == [
        ("user", "Hi"),
        ("assistant", "Hello"),
        ("user", "More"),
        ("assistant", "again"),
    ]
    assert branch[1].id == message_id
    assert [m.content for m in scripted.requests[1].messages] == ["Hi", "Hello", "More"]


async def test_the_same_chat_id_from_another_user_is_another_conversation(
    live: Live, scripted: ScriptedProvider
) -> None:
    scripted.enqueue([{"text": "for alice"}], [{"text": "for bob"}])
    async with live.client("alice") as alice, live.client("bob") as bob:
        await ui(alice, body(user_message("a")))
        await ui(bob, body(user_message("b")))
    a = await live.services.store.find_conversation_by_external("alice", "chat-1")
    b = await live.services.store.find_conversation_by_external("bob", "chat-1")
    assert a is not None and b is not None and a.id != b.id
    assert scripted.requests[1].messages[-1].content == "b"
    assert len(scripted.requests[1].messages) == 1


async def test_an_edit_and_a_regenerate_make_branches_of_the_stored_conversation(
    live: Live, scripted: ScriptedProvider
) -> None:
    scripted.enqueue([{"text": "first"}], [{"text": "edited answer"}], [{"text": "regenerated"}])
    async with live.client() as http:
        _, sent = await ui(http, body(user_message("q")))
        # useChat edit: sendMessage({text, messageId}) with the client's own id of the message
        _, edited = await ui(http, body(user_message("q2", "u1"), messageId="u1"))
        assert text(edited) == "edited answer"
        regenerate = {"id": "chat-1", "messages": [user_message("q2")]}
        _, again = await ui(http, {**regenerate, "trigger": "regenerate-message"})
        assert text(again) == "regenerated"
    convo = await live.services.store.find_conversation_by_external("alice", "chat-1")
    assert convo is not None
    branch = await live.services.store.branch("alice", convo.id, leaf_id=convo.active_leaf_id)
    assert [(m.role, m.text) for m in branch] == [("user", "q2"), ("assistant", "regenerated")]
    assert [r.messages[-1].content for r in scripted.requests] == ["q", "q2", "q2"]
    assert again[0]["messageId"] not in (sent[0]["messageId"], edited[0]["messageId"])


async def test_a_v6_approval_round_trip_continues_the_same_assistant_message(
    live: Live, scripted: ScriptedProvider, tool_registry: ToolRegistry
) -> None:
    calls = weather_tool(tool_registry)
    scripted.enqueue([WEATHER_CALL], [{"text": "It is 21C in Paris."}])
    async with live.client() as http:
        _, first = await ui(http, body(user_message("Weather in Paris?")), headers=V6)
        message_id = first[0]["messageId"]
        request = next(c for c in first if c != "[DONE]" and c["type"] == "tool-approval-request")
        assert types(first)[-3:] == ["finish-step", "finish", "[DONE]"]
        assert first[-2]["finishReason"] == "tool-calls"
        assert calls == []
        assistant = {
            "id": message_id,
            "role": "assistant",
            "parts": [
                {"type": "step-start"},
                {
                    "type": "dynamic-tool",
                    "toolName": "get_weather",
                    "toolCallId": "call_1",
                    "state": "approval-responded",
                    "input": {"city": "Paris"},
                    "approval": {"id": request["approvalId"], "approved": True},
                },
            ],
        }
        payload = body(user_message("Weather in Paris?"), assistant, messageId=message_id)
        _, second = await ui(http, payload, headers=V6)
    assert second == [
        {"type": "start", "messageId": message_id},
        {
            "type": "tool-output-available",
            "toolCallId": "call_1",
            "output": {"tempC": 21},
            "dynamic": True,
        },
        {"type": "start-step"},
        {"type": "text-start", "id": "text_1"},
        {"type": "text-delta", "id": "text_1", "delta": "It is 21C in Paris."},
        {"type": "text-end", "id": "text_1"},
        {"type": "finish-step"},
        second[-2],
        "[DONE]",
    ]
    assert second[-2]["finishReason"] == "stop"
    assert calls == [{"city": "Paris"}]
    convo = await live.services.store.find_conversation_by_external("alice", "chat-1")
    assert convo is not None
    stored = await live.services.store.get_message("alice", convo.id, message_id)
    assert stored.status == "complete"
    tool_part = next(p for p in stored.parts if p["type"] == "dynamic-tool")
    assert tool_part["state"] == "output-available"


async def test_a_v5_client_sees_an_approval_data_part_and_answers_in_the_body(
    live: Live, scripted: ScriptedProvider, tool_registry: ToolRegistry
) -> None:
    calls = weather_tool(tool_registry)
    scripted.enqueue([WEATHER_CALL], [{"text": "Fine, I will not."}])
    async with live.client() as http:
        _, first = await ui(http, body(user_message("Weather?")))
        part = next(c for c in first if c != "[DONE]" and c["type"] == "data-tool-approval")
        assert part["data"]["status"] == "pending"
        assert first[-2]["type"] == "finish" and "finishReason" not in first[-2]
        message_id = first[0]["messageId"]
        assistant = {"id": message_id, "role": "assistant", "parts": []}
        denial = [{"id": part["id"], "approved": False, "reason": "not now"}]
        payload = body(
            user_message("Weather?"), assistant, messageId=message_id, toolApprovals=denial
        )
        _, second = await ui(http, payload)
    assert second[0] == {"type": "start", "messageId": message_id}
    assert second[1]["type"] == "data-tool-approval"
    assert second[1]["data"]["status"] == "denied"
    assert second[2] == {
        "type": "tool-output-error",
        "toolCallId": "call_1",
        "errorText": "The user denied this tool call. Reason: not now",
        "dynamic": True,
    }
    assert text(second) == "Fine, I will not."
    assert calls == []


async def test_answering_an_approval_twice_is_a_conflict(
    live: Live, scripted: ScriptedProvider, tool_registry: ToolRegistry
) -> None:
    weather_tool(tool_registry)
    scripted.enqueue([WEATHER_CALL], [{"text": "done"}])
    async with live.client() as http:
        _, first = await ui(http, body(user_message("w")))
        part = next(c for c in first if c != "[DONE]" and c["type"] == "data-tool-approval")
        assistant = {"id": first[0]["messageId"], "role": "assistant", "parts": []}
        answer = [{"id": part["id"], "approved": True}]
        payload = body(user_message("w"), assistant, toolApprovals=answer)
        _, second = await ui(http, payload)
        assert text(second) == "done"
        again, _ = await ui(http, payload)
    assert again.status_code == 409


async def test_resume_replays_the_active_run_and_is_204_when_idle(
    live: Live, scripted: ScriptedProvider
) -> None:
    scripted.enqueue([{"text": "one "}, {"wait": "go"}, {"text": "two"}])
    async with live.client() as http:
        idle, _ = await ui(http, None, url="/api/chat/chat-1/stream")
        assert idle.status_code == 204
        _, partial = await ui(http, body(user_message("x")), until="text-delta")
        resumed = asyncio.create_task(ui(http, None, url="/api/chat/chat-1/stream"))
        await asyncio.sleep(0.05)
        scripted.release("go")
        _, replay = await asyncio.wait_for(resumed, 5)
        after, _ = await ui(http, None, url="/api/chat/chat-1/stream")
    assert replay[0] == partial[0]
    assert text(replay) == "one two"
    assert types(replay)[-2:] == ["finish", "[DONE]"]
    assert after.status_code == 204


async def test_errors_before_the_stream_are_http_errors_and_after_it_error_chunks(
    live: Live, scripted: ScriptedProvider
) -> None:
    scripted.enqueue(
        [{"text": "partial"}, {"error": {"code": "ERR_PROVIDER_UNAVAILABLE", "message": "down"}}]
    )
    async with live.client() as http:
        bad, _ = await ui(http, body(user_message("x"), model="nosuch/model"))
        assert bad.status_code == 400
        assert bad.json()["error"]["code"] == "ERR_INVALID_MODEL"
        async with live.client(None) as anonymous:
            unauthenticated = await anonymous.post("/api/chat", json=body(user_message("x")))
        assert unauthenticated.status_code == 401
        _, chunks = await ui(http, body(user_message("x")))
    assert types(chunks)[-3:] == ["finish-step", "error", "[DONE]"]
    assert chunks[-2] == {"type": "error", "errorText": "down"}


async def test_a_part_parley_reads_that_does_not_fit_its_type_is_a_400_naming_it(
    live: Live, scripted: ScriptedProvider, tool_registry: ToolRegistry
) -> None:
    """Text, file and answered-approval parts are checked where they enter, before anything is
    written; the client's own parts (a ``data-*`` part here) are left alone."""
    weather_tool(tool_registry)
    scripted.enqueue([WEATHER_CALL])
    async with live.client() as http:
        own = {"type": "data-mine", "data": 5}
        bad_text = {"id": "u1", "role": "user", "parts": [own, {"type": "text", "text": 5}]}
        refused = await http.post("/api/chat", json=body(bad_text, chat="chat-bad"))
        _, first = await ui(http, body(user_message("Weather?")), headers=V6)
        asked = next(c for c in first if c != "[DONE]" and c["type"] == "tool-approval-request")
        answer = {"id": asked["approvalId"], "approved": False, "reason": "no" * 1_001}
        tool = {
            "type": "dynamic-tool",
            "toolName": "get_weather",
            "toolCallId": "call_1",
            "state": "approval-responded",
            "input": {"city": "Paris"},
            "approval": answer,
        }
        assistant = {"id": first[0]["messageId"], "role": "assistant", "parts": [own, tool]}
        too_long = await http.post("/api/chat", json=body(user_message("Weather?"), assistant))
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"] == {
        "code": "ERR_VALIDATION",
        "message": "messages[0].parts[1].text: Input should be a valid string",
    }
    assert await live.services.store.find_conversation_by_external("alice", "chat-bad") is None
    assert too_long.status_code == 400, too_long.text
    message = too_long.json()["error"]["message"]
    assert message.startswith("messages[1].parts[1].approval.reason: String should have at most")
    convo = await live.services.store.find_conversation_by_external("alice", "chat-1")
    assert convo is not None
    [waiting] = await live.services.store.pending_in_conversation("alice", convo.id)
    assert waiting.status == "pending"  # the approval still waits for a good answer
    assert len(scripted.requests) == 1


@pytest.mark.parametrize("settings_overrides", [{"enable_chat_v2": False}])
async def test_the_playground_is_not_mounted_unless_enabled(live: Live) -> None:
    async with live.client() as http:
        response = await http.post("/mcp/chat-v2", json=body(user_message("x")))
    assert response.status_code == 404


@pytest.mark.parametrize(
    "settings_overrides", [{"enable_chat_v2": True, "enable_chat_v2_approvals": True}]
)
async def test_the_playground_names_its_session_and_puts_every_tool_behind_approval(
    live: Live, scripted: ScriptedProvider, tool_registry: ToolRegistry
) -> None:
    weather_tool(tool_registry, approval=False)
    scripted.enqueue([{"text": "hi"}], [WEATHER_CALL])
    async with live.client() as http:
        first, chunks = await ui(http, body(user_message("x"), chat="pg-1"), url="/mcp/chat-v2")
        session = first.headers["x-chat-session-id"]
        assert session.startswith("conv_")
        assert text(chunks) == "hi"
        payload = {"messages": [user_message("weather")], "sessionId": session}
        second, chunks = await ui(http, payload, url="/mcp/chat-v2", headers=V6)
    assert second.headers["x-chat-session-id"] == session
    assert "tool-approval-request" in types(chunks)


@pytest.mark.parametrize("settings_overrides", [{"enable_chat_v2": True}])
async def test_the_playground_takes_an_elicitation_response_and_streams_the_rest(
    live: Live, scripted: ScriptedProvider, tool_registry: ToolRegistry
) -> None:
    async def ask(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
        action, content = await ctx.elicit("Which unit?", {"type": "object"})
        return {"action": action, "content": content}

    tool_registry.register(FunctionTool("ask_unit", ask))
    scripted.enqueue([{"tool_call": {"name": "ask_unit", "id": "call_9"}}], [{"text": "ok"}])
    async with live.client() as http:
        first, chunks = await ui(
            http,
            body(user_message("go"), chat="pg-2"),
            url="/mcp/chat-v2",
            until="data-elicitation",
        )
        question = chunks[-1]
        answer = {
            "sessionId": first.headers["x-chat-session-id"],
            "messages": [],
            "elicitationResponse": {
                "requestId": question["id"],
                "action": "accept",
                "payload": {"unit": "C"},
            },
        }
        _, rest = await ui(http, answer, url="/mcp/chat-v2")
    assert rest[0] == chunks[0]
    assert rest[1]["type"] == "data-elicitation" and rest[1]["data"]["status"] == "accept"
    assert rest[2] == {
        "type": "tool-output-available",
        "toolCallId": "call_9",
        "output": {"action": "accept", "content": {"unit": "C"}},
        "dynamic": True,
    }
    assert text(rest) == "ok"


# the playground's ai@4 clients (the Data Stream protocol) ---------------------------------

PLAYGROUND = pytest.mark.parametrize("settings_overrides", [{"enable_chat_v2": True}])


def ai4_message(text: str, **fields: Any) -> dict[str, Any]:
    """A user message as ai@4's ``useChat`` sends it: ``content`` text, no id."""
    return {"role": "user", "content": text, "parts": [{"type": "text", "text": text}], **fields}


async def data_stream(
    http: httpx.AsyncClient,
    payload: dict[str, Any] | None,
    *,
    url: str = "/mcp/chat-v2",
    params: dict[str, str] | None = None,
) -> tuple[httpx.Response, list[tuple[str, Any]]]:
    """Every part of a Data Stream response as ``(code, value)``."""
    parts: list[tuple[str, Any]] = []
    method = "POST" if payload is not None else "GET"
    async with http.stream(method, url, json=payload, params=params) as response:
        if response.status_code != 200:
            await response.aread()
            return response, parts
        async for line in response.aiter_lines():
            code, _, value = line.partition(":")
            parts.append((code, json.loads(value)))
    return response, parts


@PLAYGROUND
async def test_a_v5_body_on_the_playground_still_gets_the_ui_message_stream(
    live: Live, scripted: ScriptedProvider
) -> None:
    scripted.enqueue([{"text": "hi"}])
    # DefaultChatTransport's body, with the playground's sessionId from the app's body option
    payload = body(user_message("x"), chat="pg-5", sessionId="sess-5")
    async with live.client() as http:
        response, chunks = await ui(http, payload, url="/mcp/chat-v2")
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["x-vercel-ai-ui-message-stream"] == "v1"
    assert "x-vercel-ai-data-stream" not in response.headers
    assert response.headers["x-chat-session-id"] == "sess-5"
    assert text(chunks) == "hi" and chunks[-1] == "[DONE]"


@PLAYGROUND
async def test_an_ai4_body_gets_the_data_stream_and_its_attachments_are_stored_as_files(
    live: Live, scripted: ScriptedProvider
) -> None:
    scripted.enqueue([{"text": "seen"}])
    attachment = {"name": "n.txt", "contentType": "text/plain", "url": "data:,hi"}
    payload = {
        "id": "pg-4",
        "messages": [ai4_message("look", experimental_attachments=[attachment])],
    }
    async with live.client() as http:
        response, parts = await data_stream(http, payload)
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.headers["x-vercel-ai-data-stream"] == "v1"
    assert "x-vercel-ai-ui-message-stream" not in response.headers
    session = response.headers["x-chat-session-id"]
    assert session.startswith("conv_")
    assert [code for code, _ in parts] == ["f", "0", "e", "d"]
    assert parts[1] == ("0", "seen")
    convo = await live.services.store.get_conversation("alice", session)
    branch = await live.services.store.branch("alice", session, leaf_id=convo.active_leaf_id)
    assert branch[0].parts == [
        {"type": "text", "text": "look"},
        {
            "type": "file",
            "mediaType": "text/plain",
            "url": "data:text/plain;base64,aGk=",
            "filename": "n.txt",
        },
    ]
    assert branch[1].id == parts[0][1]["messageId"]


@PLAYGROUND
async def test_an_ai4_attachment_that_cannot_be_read_is_a_400_naming_it(live: Live) -> None:
    attachment = {"contentType": "text/plain", "url": "ftp://example.com/x"}
    payload = {
        "id": "pg-4",
        "messages": [ai4_message("look", experimental_attachments=[attachment])],
    }
    async with live.client() as http:
        response = await http.post("/mcp/chat-v2", json=payload)
    assert response.status_code == 400
    assert response.headers["x-error-code"] == "ERR_VALIDATION"
    assert "messages[0].experimental_attachments[0].url" in response.json()["error"]["message"]


@PLAYGROUND
async def test_a_body_that_does_not_fit_the_schema_is_a_400_on_the_playground(live: Live) -> None:
    bad = {"id": "pg-x", "messages": [{"role": "robot", "content": "x"}]}
    async with live.client() as http:
        playground = await http.post("/mcp/chat-v2", json=bad)
        not_json = await http.post(
            "/mcp/chat-v2", content=b"{", headers={"content-type": "application/json"}
        )
        missing = await http.get("/mcp/chat-v2")
        vercel = await http.post("/api/chat", json=bad)
    for response in (playground, not_json, missing):
        assert response.status_code == 400, response.text
        assert response.headers["x-error-code"] == "ERR_VALIDATION"
        assert response.json()["success"] is False
    assert "messages.0.role" in playground.json()["error"]["message"]
    assert vercel.status_code == 422  # the Vercel door keeps FastAPI's status


@PLAYGROUND
async def test_ai4_resume_replays_the_running_reply_as_a_data_stream_and_is_empty_when_idle(
    live: Live, scripted: ScriptedProvider
) -> None:
    scripted.enqueue([{"text": "one "}, {"wait": "go"}, {"text": "two"}])
    async with live.client() as http:
        idle, nothing = await data_stream(http, None, params={"chatId": "pg-r"})
        assert (idle.status_code, nothing) == (200, [])
        assert idle.headers["x-vercel-ai-data-stream"] == "v1"
        payload = {"id": "pg-r", "messages": [ai4_message("x")]}
        async with http.stream("POST", "/mcp/chat-v2", json=payload) as first:
            sent = first.aiter_lines()
            assert [await anext(sent), await anext(sent)] == [ANY, '0:"one "']
            resume = http.stream("GET", "/mcp/chat-v2", params={"chatId": "pg-r"})
            async with resume as resumed:
                replay = resumed.aiter_lines()
                assert (await anext(replay)).startswith("f:")
                scripted.release("go")
                rest = [line async for line in replay]
    assert resumed.headers["content-type"] == "text/plain; charset=utf-8"
    assert rest[:2] == ['0:"one "', '0:"two"']
    assert rest[-1].startswith('d:{"finishReason":"stop"')


@PLAYGROUND
async def test_ai4_chats_are_matched_from_their_last_reply_on_the_branch_or_else_from_the_root(
    live: Live, scripted: ScriptedProvider
) -> None:
    """A reload re-sends the chat up to a question (its reply comes again); a new question after
    a reply that is no longer on the active branch (the reload replaced it) is still new."""
    scripted.enqueue([{"text": "A1"}], [{"text": "A2"}], [{"text": "A2 again"}], [{"text": "A3"}])

    def reply(parts: list[tuple[str, Any]], text: str) -> dict[str, Any]:
        ident = parts[0][1]["messageId"]
        return {"id": ident, "role": "assistant", "content": text, "parts": []}

    async with live.client() as http:
        chat = [ai4_message("q1")]
        _, parts = await data_stream(http, {"id": "pg-m", "messages": chat})
        chat += [reply(parts, "A1"), ai4_message("q2")]
        _, parts = await data_stream(http, {"id": "pg-m", "messages": chat})
        replaced = reply(parts, "A2")
        await data_stream(http, {"id": "pg-m", "messages": chat})  # reload()
        chat += [replaced, ai4_message("q3")]
        await data_stream(http, {"id": "pg-m", "messages": chat})
    convo = await live.services.store.find_conversation_by_external("alice", "pg-m")
    assert convo is not None
    branch = await live.services.store.branch("alice", convo.id, leaf_id=convo.active_leaf_id)
    assert [m.text for m in branch] == ["q1", "A1", "q2", "A2 again", "q3", "A3"]
