"""Structured logs: JSON lines with the request and run ids, and no secrets or message text."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from tests.conftest import Live, token
from tests.support.sse import collect, kinds

from parley.logging import MASK, Redactor, configure, scrub
from parley.providers.scripted import ScriptedProvider
from parley.tools.base import FunctionTool, ToolContext
from parley.tools.registry import ToolRegistry

SECRET_TEXT = "my locker code is 7319-alpha"
JSON_LOGS = {"log_json": True}


@pytest.fixture(autouse=True)
def _plain_logs_afterwards() -> Iterator[None]:
    yield
    configure(json_logs=False)


def json_lines(err: str) -> list[dict[str, Any]]:
    lines = [line for line in err.splitlines() if line.strip()]
    return [json.loads(line) for line in lines]  # every line must be JSON


async def _noisy(arguments: dict[str, Any], context: ToolContext) -> dict[str, Any]:
    """A tool that logs carelessly: the pipeline must still keep secrets and text out."""
    bearer = f"Bearer {arguments['token']}"
    structlog.get_logger("test.tool").info(
        "tool_saw",
        authorization=bearer,
        headers={"Authorization": bearer, "Accept": "text/plain"},
        note=f"forwarding {bearer}",
        content=arguments["text"],
        prompt_tokens=5,
    )
    return {"ok": True}


async def _chat_with_noisy_tool(
    live: Live, scripted: ScriptedProvider, tool_registry: ToolRegistry
) -> tuple[str, str, str]:
    """Send a chat whose tool logs the bearer token and the message; returns the ids and token."""
    tool_registry.register(FunctionTool("noisy", _noisy, read_only=True))
    bearer = token("alice")
    args = {"token": bearer, "text": SECRET_TEXT}
    scripted.enqueue(
        [{"tool_call": {"name": "noisy", "arguments": args, "id": "call_1"}}],
        [{"text": "done"}],
    )
    async with live.client() as http:
        cid = (await http.post("/api/conversations", json={})).json()["id"]
        response, events = await collect(
            http,
            "POST",
            f"/api/conversations/{cid}/messages",
            json_body={"content": SECRET_TEXT},
            headers={"X-Request-Id": "req-chat-1"},
        )
    assert kinds(events)[-1] == "[DONE]"
    run_id = response.headers["x-run-id"]
    await live.services.runs.wait(run_id)
    return response.headers["x-request-id"], run_id, bearer


async def _settle(live: Live) -> None:
    async with live.client() as http:
        await http.get("/healthz")  # its access line comes after the chat's


@pytest.mark.parametrize("settings_overrides", [JSON_LOGS])
async def test_json_lines_carry_request_and_run_ids_and_no_secret_or_message_text(
    live: Live,
    scripted: ScriptedProvider,
    tool_registry: ToolRegistry,
    capsys: pytest.CaptureFixture[str],
) -> None:
    capsys.readouterr()
    request_id, run_id, bearer = await _chat_with_noisy_tool(live, scripted, tool_registry)
    await _settle(live)
    err = capsys.readouterr().err
    lines = json_lines(err)

    assert request_id == "req-chat-1"
    saw = next(line for line in lines if line["event"] == "tool_saw")
    assert saw["request_id"] == request_id and saw["run_id"] == run_id
    assert saw["route"].startswith("/api/conversations/")
    assert saw["authorization"] == MASK
    assert saw["headers"] == {"Authorization": MASK, "Accept": "text/plain"}
    assert saw["note"] == f"forwarding Bearer {MASK}"
    assert "content" not in saw and saw["prompt_tokens"] == 5
    assert bearer not in err and bearer.split(".")[1] not in err
    assert SECRET_TEXT not in err


@pytest.mark.parametrize("settings_overrides", [JSON_LOGS])
async def test_every_request_gets_one_access_line_with_its_route_template(
    live: Live,
    scripted: ScriptedProvider,
    tool_registry: ToolRegistry,
    capsys: pytest.CaptureFixture[str],
) -> None:
    capsys.readouterr()
    request_id, run_id, _ = await _chat_with_noisy_tool(live, scripted, tool_registry)
    await _settle(live)
    lines = json_lines(capsys.readouterr().err)

    access = [line for line in lines if line["event"] == "request"]
    chat = next(line for line in access if line["request_id"] == request_id)
    assert chat["method"] == "POST"
    assert chat["route_template"] == "/api/conversations/{conversation_id}/messages"
    assert chat["status"] == 200 and chat["run_id"] == run_id and chat["user_id"] == "alice"
    assert isinstance(chat["duration_ms"], float) and chat["duration_ms"] >= 0
    assert chat["level"] == "info" and "timestamp" in chat
    assert sorted(line["route_template"] for line in access) == [
        "/api/conversations",
        "/api/conversations/{conversation_id}/messages",
        "/healthz",
    ]
    assert all(line["request_id"] for line in access)


@pytest.mark.parametrize("settings_overrides", [JSON_LOGS])
async def test_the_web_pages_assets_get_no_info_access_line_while_api_requests_do(
    live: Live, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    async with live.client() as http:
        assert (await http.get("/static/css/app.css")).status_code == 200
        assert (await http.get("/api/conversations")).status_code == 200
    await _settle(live)
    access = [line for line in json_lines(capsys.readouterr().err) if line["event"] == "request"]

    templates = [line["route_template"] for line in access]
    assert "/api/conversations" in templates
    assert "/static/{path}" not in templates


@pytest.mark.parametrize("settings_overrides", [{"log_json": True, "log_level": "DEBUG"}])
async def test_at_debug_the_web_pages_assets_get_their_access_line(
    live: Live, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    async with live.client() as http:
        assert (await http.get("/static/css/app.css")).status_code == 200
    await _settle(live)
    access = [line for line in json_lines(capsys.readouterr().err) if line["event"] == "request"]

    [asset] = [line for line in access if line["route_template"] == "/static/{path}"]
    assert asset["level"] == "debug" and asset["status"] == 200


@pytest.mark.parametrize("settings_overrides", [{"log_json": True, "log_content": True}])
async def test_log_content_keeps_message_text_but_never_the_token(
    live: Live,
    scripted: ScriptedProvider,
    tool_registry: ToolRegistry,
    capsys: pytest.CaptureFixture[str],
) -> None:
    capsys.readouterr()
    _, run_id, bearer = await _chat_with_noisy_tool(live, scripted, tool_registry)
    err = capsys.readouterr().err

    saw = next(line for line in json_lines(err) if line["event"] == "tool_saw")
    assert saw["content"] == SECRET_TEXT and saw["run_id"] == run_id
    assert saw["authorization"] == MASK
    assert bearer not in err


@pytest.mark.parametrize("settings_overrides", [JSON_LOGS])
async def test_stdlib_and_uvicorn_lines_are_json_too(
    live: Live, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    logging.getLogger("uvicorn.error").warning("Invalid HTTP request: Bearer abc.def.ghi")
    (line,) = json_lines(capsys.readouterr().err)
    assert line["event"] == f"Invalid HTTP request: Bearer {MASK}"
    assert line["level"] == "warning" and line["logger"] == "uvicorn.error"


async def test_the_request_id_is_echoed_on_streams_and_errors(
    live: Live, scripted: ScriptedProvider
) -> None:
    scripted.enqueue([{"text": "hi"}])
    async with live.client() as http:
        cid = (await http.post("/api/conversations", json={})).json()["id"]
        stream, _ = await collect(
            http,
            "POST",
            f"/api/conversations/{cid}/messages",
            json_body={"content": "hello"},
            headers={"X-Request-Id": "req-stream"},
        )
        missing = await http.get("/api/conversations/conv_nope")
        unrouted = await http.get("/nowhere", headers={"X-Request-Id": "req-404"})
        invalid = await http.post("/api/conversations", json={"temperature": "hot"})
        too_big = await http.post(
            "/api/conversations", content=b"x" * 3_000_000, headers={"X-Request-Id": "req-413"}
        )
    async with live.client(user=None) as anonymous:
        unauthenticated = await anonymous.get("/api/conversations")
    assert stream.headers["x-request-id"] == "req-stream"
    assert unrouted.status_code == 404 and unrouted.headers["x-request-id"] == "req-404"
    assert too_big.status_code == 413 and too_big.headers["x-request-id"] == "req-413"
    for response in (missing, invalid, unauthenticated):
        assert response.status_code >= 400 and len(response.headers["x-request-id"]) == 32


# the redaction processor itself ---------------------------------------------------------


def test_secret_keys_are_masked_whatever_their_spelling() -> None:
    redact = Redactor(log_content=True)
    event = {
        "event": "x",
        "Authorization": "Bearer abc",
        "api_key": "k1",
        "openai_api_key": "k2",
        "apiKey": "k3",
        "jwt_secret": "s",
        "password": "p",
        "refresh_token": "t",
        "set-cookie": "c",
        "prompt_tokens": 3,
        "max_tokens": 9,
        "missing_token": None,
    }
    out = redact(None, "info", event)
    for key in ("Authorization", "api_key", "openai_api_key", "apiKey", "jwt_secret", "password"):
        assert out[key] == MASK, key
    assert out["refresh_token"] == MASK and out["set-cookie"] == MASK
    assert out["prompt_tokens"] == 3 and out["max_tokens"] == 9 and out["missing_token"] is None


def test_message_text_is_dropped_unless_log_content_even_when_nested() -> None:
    event = {
        "event": "x",
        "content": "hello",
        "text": "hi",
        "args": {"title": "milk"},
        "tool": {"name": "add_task", "arguments": {"title": "milk"}},
        "items": [{"result": "r", "id": 1}],
    }
    hidden = Redactor(log_content=False)(None, "info", dict(event))
    assert hidden == {"event": "x", "tool": {"name": "add_task"}, "items": [{"id": 1}]}
    shown = Redactor(log_content=True)(None, "info", dict(event))
    assert shown == event


def test_tokens_and_keys_inside_free_text_are_masked() -> None:
    jwt = token("alice")
    assert scrub(f"failed for {jwt}!") == f"failed for {MASK}!"
    assert scrub("Authorization: bearer abc.DEF-1") == f"Authorization: Bearer {MASK}"
    assert scrub("key sk-abcdefghijklmnopqrstuv used") == f"key {MASK} used"
    assert scrub("a token-free sentence") == "a token-free sentence"


@pytest.mark.parametrize("json_logs", [False, True])
def test_no_line_carries_a_raw_control_character_from_a_value(
    json_logs: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    configure(json_logs=json_logs)
    hostile = "a\x00\x1b[31m\u202e\ud800\x7f"  # no whitespace: not quoted by the console
    structlog.get_logger("test").warning("seen\nforged", user_id=hostile, nested=[hostile])
    [line] = capsys.readouterr().err.splitlines()
    assert not any(ch in line for ch in "\x00\x1b\u202e\ud800\x7f")
    if json_logs:
        assert json.loads(line)["user_id"] == hostile
    else:
        assert "seen\\nforged" in line
        assert "user_id=a\\x00\\x1b[31m\\u202e\\ud800\\x7f" in line
