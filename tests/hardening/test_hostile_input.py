"""Hand-picked hostile input, on SQLite and PostgreSQL: each is a clear 4xx in the contract's
shape (or a success where the input is merely unusual), never a 500 or a stack trace, and the
conversation that was there before loses nothing.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from tests.conftest import Live, token
from websockets.asyncio.client import connect

pytestmark = pytest.mark.usefixtures("live_any_db")

SQL = ["1' OR '1'='1", "; DROP TABLE messages; --", "x' UNION SELECT id FROM users --"]


@dataclass
class Existing:
    """A conversation with one finished exchange, to prove hostile requests lose nothing, and
    a project of the same user's."""

    id: str
    messages: list[tuple[str, str, str]]
    project: str


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
        project = (await http.post("/api/projects", json={"name": "kept"})).json()["id"]
    assert [role for _, role, _ in before] == ["user", "assistant"]
    return Existing(id=cid, messages=before, project=project)


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
    sent = str(live_any_db.scripted.requests[-1].messages[-1].content)
    # more than the model's window: the model gets its beginning, cut with a marker
    assert sent.startswith(content[:1_000]) and sent.endswith("tokens left out]")


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


async def test_a_null_byte_in_a_project_or_a_member_id_is_refused(
    live_any_db: Live, existing: Existing
) -> None:
    members = f"/api/projects/{existing.project}/members"
    async with live_any_db.client() as http:
        created = await http.post("/api/projects", json={"name": "a\x00b"})
        renamed = await http.patch(f"/api/projects/{existing.project}", json={"name": "c\x00d"})
        added = await http.put(f"{members}/b%00ob", json={"role": "read"})
        controlled = await http.put(f"{members}/b%1Bob", json={"role": "read"})
        kept = await http.get(f"/api/projects/{existing.project}")
    for response in (created, renamed, added, controlled):
        _assert_refused(response, 400)
    assert kept.json()["name"] == "kept"
    assert [m["user_id"] for m in kept.json()["members"]] == ["alice"]


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
async def test_sql_in_a_project_id_is_just_an_unknown_id(
    live_any_db: Live, existing: Existing, hostile: str
) -> None:
    path = f"/api/projects/{httpx.URL(path=hostile).raw_path.decode()}"
    async with live_any_db.client() as http:
        for method, url, body in [
            ("GET", path, None),
            ("PATCH", path, {"name": "x"}),
            ("DELETE", path, None),
            ("PUT", f"{path}/members/bob", {"role": "read"}),
            ("DELETE", f"{path}/members/alice", None),
            ("POST", "/api/conversations", {"project_id": hostile}),
        ]:
            response = await http.request(method, url, json=body)
            _assert_refused(response, 404, "ERR_NOT_FOUND")
        listed = await http.get("/api/conversations", params={"project_id": hostile})
        _assert_refused(listed, 404, "ERR_NOT_FOUND")
        member = (
            f"/api/projects/{existing.project}/members/{httpx.URL(path=hostile).raw_path.decode()}"
        )
        added = await http.put(member, json={"role": "read"})  # an odd user id, kept as text
        assert added.status_code == 200 and added.json()["user_id"] == hostile, added.text
        kept = (await http.get(f"/api/projects/{existing.project}")).json()
    assert sorted(m["user_id"] for m in kept["members"]) == sorted(["alice", hostile])
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


# attachments -------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileDoor:
    """A door that takes a file by URL: where the file goes in its body, and its error shape."""

    name: str
    method: str
    path: str
    field: str  # how the door's 400 names the file's URL
    openai: bool = False

    def url(self, existing: Existing) -> str:
        return self.path.format(cid=existing.id, mid=existing.messages[0][0])

    def body(self, url: str, text: str = "see the file") -> dict[str, Any]:
        if self.openai:
            content = [
                {"type": "text", "text": text},
                {"type": "image_url", "image_url": {"url": url}},
            ]
            return {"model": "scripted/demo", "messages": [{"role": "user", "content": content}]}
        if self.name in ("vercel", "playground"):
            parts = [
                {"type": "text", "text": text},
                {"type": "file", "mediaType": "text/plain", "filename": "f.txt", "url": url},
            ]
            message = {"id": "u1", "role": "user", "parts": parts}
            return {"id": "chat-files", "messages": [message], "trigger": "submit-message"}
        attachment = {"type": "file", "name": "f.txt", "media_type": "text/plain", "url": url}
        return {"content": text, "attachments": [attachment], "stream": False}


FILE_DOORS = [
    FileDoor("send", "POST", "/api/conversations/{cid}/messages", "attachments[0].url"),
    FileDoor("edit", "PUT", "/api/conversations/{cid}/messages/{mid}", "attachments[0].url"),
    FileDoor("vercel", "POST", "/api/chat", "messages[0].parts[1].url"),
    FileDoor("playground", "POST", "/mcp/chat-v2", "messages[0].parts[1].url"),
    FileDoor(
        "openai",
        "POST",
        "/v1/chat/completions",
        "messages[0].content[1].image_url.url",
        openai=True,
    ),
]
MALFORMED_FILE_URLS = [
    "data:text/plain;base64,aGVsbG8",  # base64 without its padding
    "data:text/plain;base64,aGVs bG8=",  # a space inside base64
    "data:text/plain;base64,!!!!",  # not base64's alphabet
    "data:text/plain;base64,aGVsbG8=\n",
    "data:text/plain,hello%ZZ",  # a broken percent escape
    "data:text/plain",  # no comma, so no data
    "javascript:alert(1)",
    "file:///etc/passwd",
]
# the playground's door, and a per-user MCP server's credentials door (never connected: the
# tests' registry is their own)
PER_USER = {"name": "forge", "url": "http://127.0.0.1:9/mcp", "credentials": "per_user"}
WITH_PLAYGROUND = pytest.mark.parametrize(
    "settings_overrides",
    [{"enable_chat_v2": True, "secret_key": "hostile-" + "k" * 32, "mcp_servers": [PER_USER]}],
)


@WITH_PLAYGROUND
@pytest.mark.parametrize("door", FILE_DOORS, ids=lambda d: d.name)
async def test_a_malformed_file_url_is_a_400_naming_the_field_on_every_door(
    live_any_db: Live, existing: Existing, door: FileDoor
) -> None:
    async with live_any_db.client() as http:
        for url in MALFORMED_FILE_URLS:
            response = await http.request(door.method, door.url(existing), json=door.body(url))
            if door.openai:
                _assert_openai_error(response, 400)
                assert response.json()["error"]["param"] == door.field, url
                message = response.json()["error"]["message"]
            else:
                _assert_refused(response, 400)
                message = response.json()["error"]["message"]
            assert door.field in message, (url, message)
    assert len(live_any_db.scripted.requests) == 1, "only the existing exchange's call"
    await _assert_intact(live_any_db, existing)


@WITH_PLAYGROUND
@pytest.mark.parametrize("door", FILE_DOORS, ids=lambda d: d.name)
async def test_a_percent_encoded_data_url_reaches_the_model_as_its_text_on_every_door(
    live_any_db: Live, existing: Existing, door: FileDoor
) -> None:
    """``data:text/plain,abcd`` is RFC 2397 text, not base64 (which would decode it to three
    bytes of garbage): the model reads ``abcd``, and the conversation goes on."""
    live_any_db.scripted.enqueue([{"text": "Read it."}], [{"text": "Still here."}])
    async with live_any_db.client() as http:
        url = "data:text/plain,abcd%20%F0%9F%98%80"
        response = await http.request(door.method, door.url(existing), json=door.body(url))
        assert response.status_code == 200, response.text[:300]
        assert "ERR_" not in response.text, response.text[:300]
    seen = live_any_db.scripted.requests[-1].messages[-1].content
    assert isinstance(seen, str) and "abcd \N{GRINNING FACE}" in seen, seen
    if door.name == "send":
        async with live_any_db.client() as http:
            stored = (await http.get(f"/api/conversations/{existing.id}")).json()["messages"]
            [part] = [p for p in stored[-2]["parts"] if p["type"] == "file"]
            assert (
                part["url"]
                == "data:text/plain;base64,"
                + base64.b64encode("abcd \N{GRINNING FACE}".encode()).decode()
            )
            again = await http.post(
                _send_url(existing), json={"content": "and now?", "stream": False}
            )
        assert again.status_code == 200, again.text[:300]
        assert again.json()["message"]["status"] == "complete"


# What the edge refuses now, as stored before it did (or written by hand).
BAD_STORED_PARTS: list[Any] = [
    {"type": "file", "mediaType": "image/png", "url": "data:image/png;base64,@@@@"},
    {"type": "file", "mediaType": "text/plain", "url": "data:text/plain;base64,aGVsbG8"},
    {"type": "file", "mediaType": "image/png", "url": "javascript:alert(1)"},
    {"type": "text"},
    {"type": "file", "mediaType": 5, "url": ["x"]},
]
BAD_ASSISTANT_PARTS: list[Any] = [{"type": "text"}, {"type": "dynamic-tool", "toolName": "t"}]


async def test_a_conversation_with_bad_stored_parts_still_answers_and_reports_them_once(
    live_any_db: Live, existing: Existing, capsys: pytest.CaptureFixture[str]
) -> None:
    """A stored part history cannot read becomes a marker (a file) or nothing, with one log
    line naming its message, never a failed turn; a percent-encoded data: URL stored before
    the edge normalised them (the one that broke conversations) is read as its text."""
    store = live_any_db.services.store
    legacy = {"type": "file", "mediaType": "text/plain", "url": "data:text/plain,hello%20there"}
    user_parts = [{"type": "text", "text": "look:"}, legacy, *BAD_STORED_PARTS]
    bad = await store.add_message(
        "alice", existing.id, role="user", parts=user_parts, parent_id=existing.messages[-1][0]
    )
    reply_parts = [{"type": "text", "text": "ok"}, *BAD_ASSISTANT_PARTS]
    reply = await store.add_message(
        "alice", existing.id, role="assistant", parts=reply_parts, parent_id=bad.id
    )
    live_any_db.scripted.enqueue([{"text": "Fine."}], [{"text": "Fine again."}])
    capsys.readouterr()
    async with live_any_db.client() as http:
        for content in ("next", "and again"):
            response = await http.post(
                _send_url(existing), json={"content": content, "stream": False}
            )
            assert response.status_code == 200, response.text[:300]
            assert response.json()["message"]["status"] == "complete", response.text[:300]
    history = live_any_db.scripted.requests[-1].messages
    [shown] = [m for m in history if m.role == "user" and "look:" in str(m.content)]
    assert isinstance(shown.content, str)
    assert "hello there" in shown.content
    assert shown.content.count("could not be read") == 4  # the four bad files
    assert "ok" in [m.content for m in history if m.role == "assistant"]
    err = capsys.readouterr().err
    reports = [line for line in err.splitlines() if "history_part_skipped" in line]
    assert len(reports) == len(BAD_STORED_PARTS) + len(BAD_ASSISTANT_PARTS), reports  # once each
    assert sum(bad.id in line for line in reports) == len(BAD_STORED_PARTS), reports
    assert sum(reply.id in line for line in reports) == len(BAD_ASSISTANT_PARTS), reports


# lone surrogates ---------------------------------------------------------------------------

LONE_SURROGATES = ["\ud800", "x\udfffy", "\ud800\ud800", "\udc00\ud800"]


@dataclass(frozen=True)
class BodyDoor:
    """A route that reads a JSON body, a body using every string field it knows, and its shape."""

    name: str
    method: str
    path: str
    body: dict[str, Any]
    openai: bool = False
    todo: bool = False  # the todo app's shape: {"error": "<message>"}


def _send_body() -> dict[str, Any]:
    attachment = {"type": "file", "name": "n.txt", "media_type": "text/plain", "data": "aGk="}
    return {
        "content": "hi",
        "attachments": [attachment, {"media_type": "text/plain", "url": "data:,hi"}],
        "parent_id": "{leaf}",
        "model": "scripted/demo",
        "profile": "generalist",
    }


def _ui_body() -> dict[str, Any]:
    parts = [
        {"type": "text", "text": "hi"},
        {"type": "file", "mediaType": "text/plain", "filename": "n.txt", "url": "data:,hi"},
    ]
    return {
        "id": "chat-s",
        "messages": [{"id": "u1", "role": "user", "parts": parts}],
        "trigger": "submit-message",
        "provider": "scripted",
        "model": "demo",
        "selectedServers": ["todo"],
        "sessionId": "s1",
    }


def _openai_body() -> dict[str, Any]:
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    return {
        "model": "scripted/demo",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "go", "name": "al"},
            {"role": "assistant", "content": "", "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "c1", "content": "done"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "and"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                ],
            },
        ],
        "tools": [{"type": "function", "function": {"name": "g", "description": "d"}}],
        "tool_choice": "auto",
        "user": "someone",
    }


def _responses_body() -> dict[str, Any]:
    image = {"type": "input_image", "image_url": "data:image/png;base64,AAAA", "detail": "auto"}
    said = {"type": "output_text", "text": "ok", "annotations": []}
    call = {"type": "function_call", "call_id": "c1", "name": "g", "arguments": "{}", "id": "fc1"}
    return {
        "model": "scripted/demo",
        "instructions": "be brief",
        "input": [
            {"role": "developer", "content": "be kind"},
            {"role": "user", "content": "go"},
            {"type": "message", "role": "assistant", "content": [said], "status": "completed"},
            call,
            {"type": "function_call_output", "call_id": "c1", "output": "done"},
            {"role": "user", "content": [{"type": "input_text", "text": "and"}, image]},
        ],
        "tools": [{"type": "function", "name": "g", "description": "d", "strict": False}],
        "tool_choice": "auto",
        "metadata": {"k": "v"},
        "user": "someone",
    }


def _chatkit_body() -> dict[str, Any]:
    tag = {"type": "input_tag", "id": "t1", "text": "@tag", "data": {"k": "v"}, "group": "g"}
    message = {
        "content": [{"type": "input_text", "text": "hi"}, tag],
        "attachments": [],
        "quoted_text": "q",
        "inference_options": {"model": "scripted/demo", "tool_choice": {"id": "x"}},
    }
    return {
        "type": "threads.add_user_message",
        "params": {"thread_id": "{cid}", "input": message},
        "metadata": {"client_tools": [{"name": "f", "description": "d"}]},
    }


def _ag_ui_body() -> dict[str, Any]:
    image = {"type": "image", "source": {"type": "data", "value": "AAAA", "mimeType": "image/png"}}
    call = {"id": "c1", "type": "function", "function": {"name": "g", "arguments": "{}"}}
    return {
        "threadId": "{cid}",
        "runId": "run-1",
        "messages": [
            {"id": "m0", "role": "developer", "content": "be kind"},
            {"id": "m1", "role": "user", "content": "go"},
            {"id": "m2", "role": "assistant", "content": "ok", "toolCalls": [call]},
            {"id": "m3", "role": "tool", "toolCallId": "c1", "content": "done"},
            {"id": "m4", "role": "user", "content": [{"type": "text", "text": "and"}, image]},
        ],
        "tools": [{"name": "g", "description": "d", "parameters": {"type": "object"}}],
        "context": [{"description": "d", "value": "v"}],
    }


def _project_body() -> dict[str, Any]:
    return {
        "name": "p",
        "description": "d",
        "instructions": "be brief",
        "default_profile": "generalist",
    }


BODY_DOORS = [
    BodyDoor("send", "POST", "/api/conversations/{cid}/messages", _send_body()),
    BodyDoor("edit", "PUT", "/api/conversations/{cid}/messages/{mid}", _send_body()),
    BodyDoor("vercel", "POST", "/api/chat", _ui_body()),
    BodyDoor("playground", "POST", "/mcp/chat-v2", _ui_body()),
    BodyDoor("openai", "POST", "/v1/chat/completions", _openai_body(), openai=True),
    BodyDoor("responses", "POST", "/v1/responses", _responses_body(), openai=True),
    BodyDoor(
        "create",
        "POST",
        "/api/conversations",
        {"title": "t", "system": "s", "model": "scripted/demo", "metadata": {"k": ["v"]}},
    ),
    BodyDoor(
        "sessions", "POST", "/sessions/{cid}/chat", {"message": "hi", "model": "scripted/demo"}
    ),
    BodyDoor(
        "todo", "POST", "/api/alice/chat", {"message": "hi", "conversation_id": "{cid}"}, todo=True
    ),
    BodyDoor("chatkit", "POST", "/chatkit", _chatkit_body()),
    BodyDoor("ag-ui", "POST", "/ag-ui", _ag_ui_body()),
    BodyDoor("project", "POST", "/api/projects", _project_body()),
    BodyDoor("project-patch", "PATCH", "/api/projects/{pid}", _project_body()),
    BodyDoor("member", "PUT", "/api/projects/{pid}/members/bob", {"role": "write"}),
    BodyDoor(
        "create-in-project",
        "POST",
        "/api/conversations",
        {"title": "t", "system": "s", "project_id": "{pid}", "metadata": {"k": ["v"]}},
    ),
    BodyDoor(
        "mcp-credentials",
        "PUT",
        "/api/mcp/servers/forge/credentials",
        {"headers": {"Authorization": "Token t0k3n", "X-Org": "acme"}},
    ),
]


def _with_each_string_spoiled(value: Any, spoil: str) -> list[tuple[str, Any]]:
    """``value`` once for each string in it (keys included), that string made ``spoil``."""
    if isinstance(value, str):
        return [("", spoil)]
    out: list[tuple[str, Any]] = []
    if isinstance(value, dict):
        out.append((f".{spoil!a}", {**value, spoil: "v"}))
        for key, item in value.items():
            out += [
                (f".{key}{where}", {**value, key: bad})
                for where, bad in _with_each_string_spoiled(item, spoil)
            ]
    elif isinstance(value, list):
        for i, item in enumerate(value):
            spoiled = _with_each_string_spoiled(item, spoil)
            out += [(f"[{i}]{where}", [*value[:i], bad, *value[i + 1 :]]) for where, bad in spoiled]
    return out


@WITH_PLAYGROUND
@pytest.mark.parametrize("door", BODY_DOORS, ids=lambda d: d.name)
async def test_a_lone_surrogate_in_any_string_of_a_body_is_a_4xx_in_the_doors_shape(
    live_any_db: Live, existing: Existing, door: BodyDoor
) -> None:
    """Each body is the one the next test shows accepted, with one string (or key) spoiled."""
    ids = _ids(existing)
    path = door.path.format(**ids)
    cases = [
        (where, _filled(body, ids))
        for spoil in LONE_SURROGATES
        for where, body in _with_each_string_spoiled(door.body, spoil)
    ]
    async with live_any_db.client() as http:
        for where, body in cases:
            raw = json.dumps(body).encode()  # ensure_ascii: each surrogate is a \\uXXXX escape
            response = await http.request(
                door.method, path, content=raw, headers={"content-type": "application/json"}
            )
            assert 400 <= response.status_code < 500, (
                where,
                response.status_code,
                response.text[:300],
            )
            if door.openai:
                _assert_openai_error(response, response.status_code)
            elif door.todo:
                assert response.json() == {"error": ANY_TEXT}, response.text[:300]
                assert response.headers["x-error-code"].startswith("ERR_")
            else:
                _assert_refused(response, response.status_code, response.json()["error"]["code"])
    assert len(live_any_db.scripted.requests) == 1, "only the existing exchange's call"
    await _assert_intact(live_any_db, existing)


@WITH_PLAYGROUND
@pytest.mark.parametrize("door", BODY_DOORS, ids=lambda d: d.name)
async def test_each_body_is_accepted_as_it_is(
    live_any_db: Live, existing: Existing, door: BodyDoor
) -> None:
    """So that in the test above, the spoiled string is all that is wrong with a body."""
    live_any_db.scripted.enqueue([{"text": "Fine."}])
    ids = _ids(existing)
    async with live_any_db.client() as http:
        response = await http.request(
            door.method, door.path.format(**ids), json=_filled(door.body, ids)
        )
    assert response.status_code in (200, 201), response.text[:300]
    assert "ERR_" not in response.text, response.text[:300]


def _ids(existing: Existing) -> dict[str, str]:
    return {
        "cid": existing.id,
        "mid": existing.messages[0][0],
        "leaf": existing.messages[-1][0],
        "pid": existing.project,
    }


def _filled(value: Any, ids: dict[str, str]) -> Any:
    """``value`` with each string ``"{name}"`` replaced by that id."""
    if isinstance(value, str) and value.startswith("{") and value.endswith("}"):
        return ids.get(value[1:-1], value)
    if isinstance(value, dict):
        return {k: _filled(v, ids) for k, v in value.items()}
    if isinstance(value, list):
        return [_filled(item, ids) for item in value]
    return value


async def test_a_lone_surrogate_on_the_progress_socket_is_an_error_message_and_it_stays_open(
    live_any_db: Live, existing: Existing
) -> None:
    url = live_any_db.url.replace("http://", "ws://") + f"/ws/alice/chat?token={token('alice')}"
    body = {"type": "message", "content": "hi", "conversation_id": existing.id}
    async with connect(url) as ws:
        assert json.loads(await ws.recv())["event_type"] == "connection_established"
        for spoil in LONE_SURROGATES:
            for where, spoiled in _with_each_string_spoiled(body, spoil):
                await ws.send(json.dumps(spoiled))
                async with asyncio.timeout(5):
                    answer = json.loads(await ws.recv())
                assert answer["event_type"] == "error", (where, answer)
                assert answer["error"]["code"] == "ERR_VALIDATION", (where, answer)
    assert len(live_any_db.scripted.requests) == 1, "only the existing exchange's call"
    await _assert_intact(live_any_db, existing)


async def test_a_lone_surrogate_inside_tool_call_arguments_is_a_400_in_openais_shape(
    live_any_db: Live,
) -> None:
    """The arguments are JSON inside a JSON string: their escape is ``\\\\ud800`` in the body."""
    body = _openai_body()
    body["messages"][2]["tool_calls"][0]["function"]["arguments"] = json.dumps({"q": "\ud800"})
    async with live_any_db.client() as http:
        response = await http.post("/v1/chat/completions", json=body)
    _assert_openai_error(response, 400)
    assert live_any_db.scripted.requests == []


async def test_surrogate_pairs_and_an_escaped_backslash_before_ud800_are_ordinary_text(
    live_any_db: Live, existing: Existing
) -> None:
    title = "\N{GRINNING FACE} C: '\\ud800'"
    async with live_any_db.client() as http:
        response = await http.post(
            "/api/conversations",
            content=json.dumps({"title": title}).encode(),
            headers={"content-type": "application/json"},
        )
        assert response.status_code == 201, response.text
        assert b"\\ud83d\\ude00" in response.request.content
        got = (await http.get(f"/api/conversations/{response.json()['id']}")).json()
    assert got["title"] == title
    await _assert_intact(live_any_db, existing)


# tokens and logs ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sub",
    ["\ud800", "a\x00b", "alice\nlevel=info event=forged", "\x1b[31mred", "a\u202eb", "a\x7f"],
)
async def test_a_token_whose_sub_has_control_characters_or_lone_surrogates_is_a_401(
    live_any_db: Live, sub: str
) -> None:
    headers = {"Authorization": f"Bearer {token(sub)}"}
    async with live_any_db.client(user=None) as http:
        native = await http.get("/api/conversations", headers=headers)
        openai = await http.get("/v1/models", headers=headers)
    _assert_refused(native, 401, "ERR_UNAUTHENTICATED")
    _assert_openai_error(openai, 401)


async def test_the_console_log_escapes_control_characters_a_client_sent(
    live_any_db: Live, capsys: pytest.CaptureFixture[str]
) -> None:
    """An ANSI escape, a bidi override and DEL in the path (the access line's ``route``) are
    written as escapes: nothing a client sends restyles or reorders a line of the console."""
    capsys.readouterr()
    async with live_any_db.client() as http:
        response = await http.get("/api/conversations/x%1B%5B31mred%E2%80%AEend%7F")
        assert response.status_code == 404
        await http.get("/healthz")  # its access line comes after the one above
    err = capsys.readouterr().err
    assert r"route=/api/conversations/x\x1b[31mred\u202eend\x7f" in err, err
    assert not {"\x1b", "\u202e", "\x7f"} & set(err), err


WRONG_TYPES: list[Any] = [7, 1.5, True, None, [], {}, "x", [{"type": "x"}]]


def _with_each_value_swapped(value: Any, wrong: Any) -> list[tuple[str, Any]]:
    """``value`` once for each value in it (containers included), that value made ``wrong``."""
    out: list[tuple[str, Any]] = [] if type(value) is type(wrong) else [("", wrong)]
    if isinstance(value, dict):
        for key, item in value.items():
            swapped = _with_each_value_swapped(item, wrong)
            out += [(f".{key}{where}", {**value, key: bad}) for where, bad in swapped]
    elif isinstance(value, list):
        for i, item in enumerate(value):
            swapped = _with_each_value_swapped(item, wrong)
            out += [(f"[{i}]{where}", [*value[:i], bad, *value[i + 1 :]]) for where, bad in swapped]
    return out


@WITH_PLAYGROUND
@pytest.mark.parametrize("door", BODY_DOORS, ids=lambda d: d.name)
async def test_a_value_of_the_wrong_type_anywhere_in_a_body_is_never_a_500(
    live_any_db: Live, existing: Existing, door: BodyDoor
) -> None:
    """Each value of the accepted body, one at a time, swapped for a number, a boolean, null, a
    list, an object or a string: refused in the door's shape, or taken; never a 500, and the
    conversation it reaches still answers afterwards."""
    ids = _ids(existing)
    path = door.path.format(**ids)
    cases = [
        (where, _filled(body, ids))
        for wrong in WRONG_TYPES
        for where, body in _with_each_value_swapped(door.body, wrong)
    ]
    assert len(cases) > 10
    live_any_db.scripted.enqueue(*[[{"text": "Taken."}] for _ in cases])  # for what is taken
    async with live_any_db.client() as http:
        for where, body in cases:
            response = await http.request(door.method, path, json=body)
            assert response.status_code < 500, (where, response.status_code, response.text[:300])
            assert "Traceback" not in response.text, where
            if response.status_code >= 400 and door.openai:
                _assert_openai_error(response, response.status_code)
            elif response.status_code >= 400 and door.todo:
                assert response.json() == {"error": ANY_TEXT}, (where, response.text[:300])
            elif response.status_code >= 400:
                assert response.json()["success"] is False, (where, response.text[:300])
        live_any_db.scripted.turns.clear()
        live_any_db.scripted.enqueue([{"text": "Still here."}])
        after = await http.post(
            f"/api/conversations/{existing.id}/messages",
            json={"content": "still there?", "stream": False},
        )
    assert after.status_code == 200, after.text[:300]
    assert "Still here." in after.text
