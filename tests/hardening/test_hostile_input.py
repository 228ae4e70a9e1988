"""Hand-picked hostile input, on SQLite and PostgreSQL: each is a clear 4xx in the contract's
shape (or a success where the input is merely unusual), never a 500 or a stack trace, and the
conversation that was there before loses nothing.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from tests.conftest import Live

pytestmark = pytest.mark.usefixtures("live_any_db")

SQL = ["1' OR '1'='1", "; DROP TABLE messages; --", "x' UNION SELECT id FROM users --"]


@dataclass
class Existing:
    """A conversation with one finished exchange, to prove hostile requests lose nothing."""

    id: str
    messages: list[tuple[str, str, str]]


async def _messages(http: httpx.AsyncClient, cid: str) -> list[tuple[str, str, str]]:
    response = await http.get(f"/api/conversations/{cid}")
    assert response.status_code == 200, response.text
    return [(m["id"], m["role"], json.dumps(m["parts"])) for m in response.json()["messages"]]


@pytest.fixture
async def existing(live_any_db: Live) -> Existing:
    live_any_db.scripted.enqueue([{"text": "Hello alice."}])
    async with live_any_db.client() as http:
        cid = (await http.post("/api/conversations", json={"title": "kept"})).json()["id"]
        sent = await http.post(
            f"/api/conversations/{cid}/messages", json={"content": "hi", "stream": False}
        )
        assert sent.status_code == 200, sent.text
        before = await _messages(http, cid)
    assert [role for _, role, _ in before] == ["user", "assistant"]
    return Existing(id=cid, messages=before)


async def _assert_intact(live: Live, existing: Existing) -> None:
    async with live.client() as http:
        assert await _messages(http, existing.id) == existing.messages
        titles = [c["title"] for c in (await http.get("/api/conversations")).json()["items"]]
    assert "kept" in titles


def _assert_refused(response: httpx.Response, status: int, code: str = "ERR_VALIDATION") -> None:
    """The contract's error shape, its header, and nothing of Python's insides."""
    label = f"{response.status_code} {response.text[:300]}"
    assert response.status_code == status, label
    assert response.json() == {"success": False, "error": {"code": code, "message": ANY_TEXT}}
    assert response.headers["x-error-code"] == code
    assert "Traceback" not in response.text and 'File "' not in response.text, label


class _AnyText(str):
    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and bool(other)

    def __hash__(self) -> int:
        return 0


ANY_TEXT = _AnyText()


def _assert_openai_error(response: httpx.Response, status: int) -> None:
    """The OpenAI door's errors are in OpenAI's shape, whatever raised them."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    assert body["error"]["type"] and body["error"]["message"], body


def _send_url(existing: Existing) -> str:
    return f"/api/conversations/{existing.id}/messages"


# bodies ------------------------------------------------------------------------------------


async def test_a_body_over_the_limit_with_content_length_is_a_413(
    live_any_db: Live, existing: Existing
) -> None:
    big = json.dumps({"content": "x" * 2_100_000}).encode()
    async with live_any_db.client() as http:
        response = await http.post(
            _send_url(existing), content=big, headers={"content-type": "application/json"}
        )
    _assert_refused(response, 413)
    await _assert_intact(live_any_db, existing)


async def test_a_chunked_body_over_the_limit_is_a_413(
    live_any_db: Live, existing: Existing
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"content": "'
        for _ in range(25):
            yield b"x" * 100_000
        yield b'"}'

    async with live_any_db.client() as http:
        response = await http.post(
            _send_url(existing), content=chunks(), headers={"content-type": "application/json"}
        )
    assert "content-length" not in response.request.headers
    _assert_refused(response, 413)
    await _assert_intact(live_any_db, existing)


@pytest.mark.parametrize("opener", [b"[", b'{"a":'])
async def test_json_nested_a_hundred_thousand_levels_deep_is_a_400(
    live_any_db: Live, existing: Existing, opener: bytes
) -> None:
    body = opener * 100_000
    async with live_any_db.client() as http:
        for url in (_send_url(existing), "/api/conversations", "/api/chat"):
            response = await http.post(
                url, content=body, headers={"content-type": "application/json"}
            )
            _assert_refused(response, 400)
    await _assert_intact(live_any_db, existing)


async def test_invalid_utf8_in_a_json_body_is_a_400(live_any_db: Live, existing: Existing) -> None:
    body = b'{"content": "caf\xc3\x28 \xff\xfe"}'
    async with live_any_db.client() as http:
        response = await http.post(
            _send_url(existing), content=body, headers={"content-type": "application/json"}
        )
    _assert_refused(response, 400)
    await _assert_intact(live_any_db, existing)


async def test_invalid_utf8_on_the_openai_door_is_a_400_in_openais_shape(
    live_any_db: Live,
) -> None:
    async with live_any_db.client() as http:
        response = await http.post(
            "/v1/chat/completions",
            content=b'{"model": "scripted/demo", "messages": [\xff]}',
            headers={"content-type": "application/json"},
        )
    _assert_openai_error(response, 400)
    assert response.json()["error"]["type"] == "invalid_request_error"


async def test_the_edge_refuses_openai_requests_in_openais_shape(live_any_db: Live) -> None:
    """A body over the limit and a null byte in the body are refused before any route runs; on
    the OpenAI door the refusal is still in OpenAI's shape."""
    body = {"model": "scripted/demo", "messages": [{"role": "user", "content": "a\x00b"}]}
    async with live_any_db.client() as http:
        null = await http.post("/v1/chat/completions", json=body)
        big = await http.post(
            "/v1/chat/completions",
            content=b"x" * 2_100_000,
            headers={"content-type": "application/json"},
        )
    _assert_openai_error(null, 400)
    assert "null bytes" in null.json()["error"]["message"]
    _assert_openai_error(big, 413)
    assert live_any_db.scripted.requests == []


async def test_an_unroutable_openai_path_is_a_404_in_openais_shape(live_any_db: Live) -> None:
    async with live_any_db.client() as http:
        response = await http.get("/v1/models/a%0Ab")
    _assert_openai_error(response, 404)


# messages ----------------------------------------------------------------------------------


async def test_a_one_megabyte_message_over_the_char_limit_is_a_400(
    live_any_db: Live, existing: Existing
) -> None:
    async with live_any_db.client() as http:
        response = await http.post(_send_url(existing), json={"content": "y" * 1_000_000})
    _assert_refused(response, 400)
    assert "200000 characters" in response.json()["error"]["message"]
    await _assert_intact(live_any_db, existing)


@pytest.mark.parametrize("settings_overrides", [{"max_message_chars": 1_500_000}])
async def test_a_one_megabyte_message_under_a_raised_limit_is_stored_whole(
    live_any_db: Live, existing: Existing
) -> None:
    content = "".join(chr(0x41 + i % 26) for i in range(1_000_000))
    live_any_db.scripted.enqueue([{"text": "Long."}])
    async with live_any_db.client() as http:
        response = await http.post(_send_url(existing), json={"content": content, "stream": False})
        assert response.status_code == 200, response.text[:300]
        after = (await http.get(f"/api/conversations/{existing.id}")).json()["messages"]
    assert after[-2]["parts"] == [{"type": "text", "text": content}]
    assert [p.get("text") for p in after[-1]["parts"] if p["type"] == "text"] == ["Long."]
    assert live_any_db.scripted.requests[-1].messages[-1].content == content


async def test_ten_thousand_attachments_are_a_validation_error(
    live_any_db: Live, existing: Existing
) -> None:
    attachment = {"type": "text", "media_type": "text/plain", "data": "aGk="}
    body = {"content": "see attached", "attachments": [attachment] * 10_000}
    async with live_any_db.client() as http:
        response = await http.post(_send_url(existing), json=body)
    _assert_refused(response, 422)
    await _assert_intact(live_any_db, existing)


# null bytes --------------------------------------------------------------------------------


async def test_a_null_byte_in_a_title_is_refused(live_any_db: Live, existing: Existing) -> None:
    async with live_any_db.client() as http:
        created = await http.post("/api/conversations", json={"title": "a\x00b"})
        renamed = await http.patch(f"/api/conversations/{existing.id}", json={"title": "c\x00d"})
    _assert_refused(created, 400)
    _assert_refused(renamed, 400)
    await _assert_intact(live_any_db, existing)


@pytest.mark.parametrize(
    "body",
    [
        {"content": "before\x00after"},
        {"content": "hi", "attachments": [{"media_type": "text/plain", "url": "x\x00y"}]},
    ],
)
async def test_a_null_byte_in_a_message_is_refused_and_writes_nothing(
    live_any_db: Live, existing: Existing, body: dict[str, Any]
) -> None:
    async with live_any_db.client() as http:
        response = await http.post(_send_url(existing), json=body)
    _assert_refused(response, 400)
    assert len(live_any_db.scripted.requests) == 1, "only the existing exchange's call"
    await _assert_intact(live_any_db, existing)


async def test_a_null_byte_in_metadata_is_refused(live_any_db: Live, existing: Existing) -> None:
    async with live_any_db.client() as http:
        response = await http.post("/api/conversations", json={"metadata": {"k\x00": "v\x00"}})
    _assert_refused(response, 400)
    await _assert_intact(live_any_db, existing)


@pytest.mark.parametrize(
    "url",
    [
        "/api/conversations/%00",
        "/api/conversations/a%00b/messages",
        "/api/conversations?q=%00",
        "/api/conversations?q=a%00b",
        "/api/runs/%00",
        "/v1/models/%00",
    ],
)
async def test_a_null_byte_in_the_url_is_a_400(
    live_any_db: Live, existing: Existing, url: str
) -> None:
    async with live_any_db.client() as http:
        response = await http.get(url)
    if url.startswith("/v1/"):
        _assert_openai_error(response, 400)
    else:
        _assert_refused(response, 400)
    await _assert_intact(live_any_db, existing)


async def test_a_json_escaped_backslash_before_u0000_is_ordinary_text(
    live_any_db: Live, existing: Existing
) -> None:
    """``"\\u0000"`` in JSON is the six characters \\u0000, not a null byte: it is stored."""
    async with live_any_db.client() as http:
        response = await http.post("/api/conversations", json={"title": "C: '\\u0000'"})
        assert response.status_code == 201, response.text
        got = (await http.get(f"/api/conversations/{response.json()['id']}")).json()
    assert got["title"] == "C: '\\u0000'"
    await _assert_intact(live_any_db, existing)


# ids and query parameters ------------------------------------------------------------------


@pytest.mark.parametrize("hostile", SQL)
async def test_sql_in_a_conversation_id_is_just_an_unknown_id(
    live_any_db: Live, existing: Existing, hostile: str
) -> None:
    path = f"/api/conversations/{httpx.URL(path=hostile).raw_path.decode()}"
    async with live_any_db.client() as http:
        for method, url, body in [
            ("GET", path, None),
            ("GET", f"{path}/messages", None),
            ("PATCH", path, {"title": "x"}),
            ("DELETE", path, None),
            ("POST", f"{path}/messages", {"content": "hi"}),
            ("POST", f"{path}/fork", {"message_id": hostile[:40]}),
        ]:
            response = await http.request(method, url, json=body)
            _assert_refused(response, 404, "ERR_NOT_FOUND")
    await _assert_intact(live_any_db, existing)


@pytest.mark.parametrize("hostile", SQL)
async def test_sql_in_query_parameters_matches_nothing_and_breaks_nothing(
    live_any_db: Live, existing: Existing, hostile: str
) -> None:
    async with live_any_db.client() as http:
        search = await http.get("/api/conversations", params={"q": hostile})
        assert search.status_code == 200, search.text
        assert search.json()["items"] == []
        cursor = await http.get("/api/conversations", params={"cursor": hostile})
        _assert_refused(cursor, 400)
        before = await http.get(_send_url(existing), params={"before": hostile})
        assert before.status_code in (200, 404), before.text
        if before.status_code == 404:
            _assert_refused(before, 404, "ERR_NOT_FOUND")
    await _assert_intact(live_any_db, existing)


@pytest.mark.parametrize("limit", ["10000000000000000000000", "-1", "0", "1e3", "NaN", "", "1;"])
async def test_hostile_limits_are_a_validation_error(
    live_any_db: Live, existing: Existing, limit: str
) -> None:
    async with live_any_db.client() as http:
        for url in ("/api/conversations", f"/api/conversations/{existing.id}", _send_url(existing)):
            response = await http.get(url, params={"limit": limit})
            _assert_refused(response, 422)
    await _assert_intact(live_any_db, existing)


@pytest.mark.parametrize(
    "cursor",
    [
        "!!!",
        "eyJ4IjoxfQ",  # {"x":1}
        "a" * 500,
        "AAAA",
        "W10=",
        "\x00",
        "MjAyNC0wMS0wMXx4",  # 2024-01-01|x: a naive time
        "MjAyNC0wMS0wMVQwMDowMDowMCswMDowMHwA",  # an aware time, then a null byte
    ],
)
async def test_bad_cursors_are_a_validation_error(
    live_any_db: Live, existing: Existing, cursor: str
) -> None:
    async with live_any_db.client() as http:
        response = await http.get("/api/conversations", params={"cursor": cursor})
    _assert_refused(response, 400)
    await _assert_intact(live_any_db, existing)


@pytest.mark.parametrize(
    ("moment", "found"),
    [("9999-12-31T23:59:59.999999+00:00", True), ("0001-01-01T00:00:00-23:59", False)],
)
async def test_a_well_formed_cursor_at_the_ends_of_time_pages_normally(
    live_any_db: Live, existing: Existing, moment: str, found: bool
) -> None:
    cursor = base64.urlsafe_b64encode(f"{moment}|{'z' * 40}".encode()).decode()
    async with live_any_db.client() as http:
        response = await http.get("/api/conversations", params={"cursor": cursor.rstrip("=")})
    assert response.status_code == 200, response.text
    assert [c["id"] for c in response.json()["items"]] == ([existing.id] if found else [])
