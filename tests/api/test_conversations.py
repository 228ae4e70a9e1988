"""The conversations API on SQLite and PostgreSQL, scoped by user."""

from __future__ import annotations

import pytest
from tests.conftest import Live


async def test_create_get_patch_delete_a_conversation(live_any_db: Live) -> None:
    async with live_any_db.client() as http:
        created = await http.post(
            "/api/conversations",
            json={"title": "Trip", "temperature": 0.3, "system": "Be brief", "metadata": {"k": 1}},
        )
        assert created.status_code == 201
        body = created.json()
        assert body["title"] == "Trip"
        assert body["temperature"] == 0.3
        assert body["metadata"] == {"k": 1}
        assert body["usage"] == {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
        cid = body["id"]

        got = await http.get(f"/api/conversations/{cid}")
        assert got.status_code == 200
        assert got.json()["messages"] == []

        patched = await http.patch(f"/api/conversations/{cid}", json={"title": "Trip to Rome"})
        assert patched.json()["title"] == "Trip to Rome"
        assert patched.json()["temperature"] == 0.3

        deleted = await http.delete(f"/api/conversations/{cid}")
        assert deleted.status_code == 204
        gone = await http.get(f"/api/conversations/{cid}")
        assert gone.status_code == 404
        assert gone.json() == {
            "success": False,
            "error": {"code": "ERR_NOT_FOUND", "message": "conversation not found"},
        }
        assert gone.headers["x-error-code"] == "ERR_NOT_FOUND"


async def test_patch_sets_the_settings_and_null_puts_each_back_to_its_default(
    live_any_db: Live,
) -> None:
    async with live_any_db.client() as http:
        cid = (await http.post("/api/conversations", json={})).json()["id"]
        settings = {"model": "scripted/demo", "profile": "todo", "temperature": 0.4, "system": "S"}
        set_ = (await http.patch(f"/api/conversations/{cid}", json=settings)).json()
        assert (set_["provider"], set_["model"], set_["profile"]) == ("scripted", "demo", "todo")
        assert (set_["temperature"], set_["system"]) == (0.4, "S")
        nulls = {"model": None, "provider": None, "profile": None, "temperature": None}
        cleared = (
            await http.patch(f"/api/conversations/{cid}", json={**nulls, "system": None})
        ).json()
        assert [cleared[k] for k in ("model", "provider", "profile", "temperature", "system")] == [
            None
        ] * 5
        bad = await http.patch(f"/api/conversations/{cid}", json={"temperature": 3})
        assert bad.status_code == 422


async def test_pagination_over_many_conversations_has_no_duplicate_and_no_gap(
    live_any_db: Live,
) -> None:
    store = live_any_db.services.store
    made = [(await store.create_conversation("alice", title=f"c{i}")).id for i in range(1000)]
    seen: list[str] = []
    cursor = None
    async with live_any_db.client() as http:
        while True:
            params: dict[str, str | int] = {"limit": 97}
            if cursor:
                params["cursor"] = cursor
            page = (await http.get("/api/conversations", params=params)).json()
            seen.extend(item["id"] for item in page["items"])
            cursor = page["next_cursor"]
            if cursor is None:
                break
    assert len(seen) == len(set(seen)) == 1000
    assert seen == list(reversed(made))


async def test_search_finds_titles_and_message_text_case_insensitively(live_any_db: Live) -> None:
    store = live_any_db.services.store
    by_title = await store.create_conversation("alice", title="Quarterly REPORT")
    by_text = await store.create_conversation("alice", title="misc")
    await store.add_message(
        "alice",
        by_text.id,
        role="user",
        parts=[{"type": "text", "text": "the report is late"}],
        parent_id=None,
    )
    await store.create_conversation("alice", title="other")
    await store.create_conversation("bob", title="bob's report")
    percent = await store.create_conversation("alice", title="100% done")
    async with live_any_db.client() as http:
        found = (await http.get("/api/conversations", params={"q": "report"})).json()["items"]
        assert {c["id"] for c in found} == {by_title.id, by_text.id}
        literal = (await http.get("/api/conversations", params={"q": "0%"})).json()["items"]
        assert [c["id"] for c in literal] == [percent.id]


async def test_a_search_result_shows_a_bounded_snippet_of_its_newest_matching_message(
    live_any_db: Live,
) -> None:
    store = live_any_db.services.store
    long = await store.create_conversation("alice", title="notes")
    text = "lorem ipsum " * 400 + "The Quarterly REPORT is late\n\nagain. " + "dolor sit " * 400
    first = await store.add_message(
        "alice",
        long.id,
        role="user",
        parts=[{"type": "text", "text": "an old report"}],
        parent_id=None,
    )
    newest = await store.add_message(
        "alice",
        long.id,
        role="assistant",
        parts=[{"type": "text", "text": text}],
        parent_id=first.id,
    )
    short = await store.create_conversation("alice", title="misc")
    said = await store.add_message(
        "alice",
        short.id,
        role="user",
        parts=[{"type": "text", "text": "Report: 100% done"}],
        parent_id=None,
    )
    by_title = await store.create_conversation("alice", title="Report titles only")
    bob = await store.create_conversation("bob", title="bob")
    await store.add_message(
        "bob",
        bob.id,
        role="user",
        parts=[{"type": "text", "text": "bob's report"}],
        parent_id=None,
    )
    async with live_any_db.client() as http:
        found = (await http.get("/api/conversations", params={"q": "report"})).json()["items"]
        plain = (await http.get("/api/conversations")).json()["items"]
        literal = (await http.get("/api/conversations", params={"q": "0% d"})).json()["items"]
    matches = {c["id"]: c["match"] for c in found}
    assert set(matches) == {long.id, short.id, by_title.id}
    assert matches[by_title.id] is None
    assert matches[short.id] == {
        "message_id": said.id,
        "role": "user",
        "snippet": "Report: 100% done",
    }
    match = matches[long.id]
    assert (match["message_id"], match["role"]) == (newest.id, "assistant")
    snippet = match["snippet"]
    assert "The Quarterly REPORT is late again." in snippet
    assert snippet.startswith("…") and snippet.endswith("…")
    assert len(snippet) <= 2 + 160
    assert snippet.index("REPORT") <= 52
    assert all("match" not in c for c in plain)
    assert [(c["id"], c["match"]["snippet"]) for c in literal] == [(short.id, "Report: 100% done")]


async def test_fork_copies_the_history_up_to_the_message(live_any_db: Live) -> None:
    store = live_any_db.services.store
    convo = await store.create_conversation("alice", title="Source", system="sys")
    parent = None
    ids = []
    for i, role in enumerate(["user", "assistant", "user", "assistant"]):
        message = await store.add_message(
            "alice",
            convo.id,
            role=role,
            parts=[{"type": "text", "text": f"m{i}"}],
            parent_id=parent,
        )
        ids.append(message.id)
        parent = message.id
    async with live_any_db.client() as http:
        forked = await http.post(f"/api/conversations/{convo.id}/fork", json={"message_id": ids[1]})
        assert forked.status_code == 201
        body = forked.json()
        assert body["id"] != convo.id
        assert body["title"] == "Source (fork)"
        assert body["system"] == "sys"
        assert [(m["role"], m["parts"][0]["text"]) for m in body["messages"]] == [
            ("user", "m0"),
            ("assistant", "m1"),
        ]
        assert body["side_effects"] == []
        again = (await http.get(f"/api/conversations/{body['id']}")).json()
        assert [m["parts"][0]["text"] for m in again["messages"]] == ["m0", "m1"]
        assert again["messages"][1]["parent_id"] == again["messages"][0]["id"]
        original = (await http.get(f"/api/conversations/{convo.id}")).json()
        assert len(original["messages"]) == 4


async def test_messages_page_backwards_through_a_long_branch(live_any_db: Live) -> None:
    store = live_any_db.services.store
    convo = await store.create_conversation("alice")
    parent = None
    for i in range(25):
        message = await store.add_message(
            "alice",
            convo.id,
            role="user" if i % 2 == 0 else "assistant",
            parts=[{"type": "text", "text": str(i)}],
            parent_id=parent,
        )
        parent = message.id
    async with live_any_db.client() as http:
        first = (await http.get(f"/api/conversations/{convo.id}", params={"limit": 10})).json()
        texts = [m["parts"][0]["text"] for m in first["messages"]]
        assert texts == [str(i) for i in range(15, 25)]
        assert first["has_more"] is True
        older = (
            await http.get(
                f"/api/conversations/{convo.id}/messages",
                params={"before": first["messages"][0]["id"], "limit": 10},
            )
        ).json()
        assert [m["parts"][0]["text"] for m in older["items"]] == [str(i) for i in range(5, 15)]
        oldest = (
            await http.get(
                f"/api/conversations/{convo.id}/messages",
                params={"before": older["items"][0]["id"], "limit": 10},
            )
        ).json()
        assert [m["parts"][0]["text"] for m in oldest["items"]] == [str(i) for i in range(5)]
        assert oldest["has_more"] is False


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/api/conversations/{id}", None),
        ("GET", "/api/conversations/{id}/messages", None),
        ("PATCH", "/api/conversations/{id}", {"title": "mine now"}),
        ("DELETE", "/api/conversations/{id}", None),
        ("POST", "/api/conversations/{id}/fork", {"message_id": "{mid}"}),
        ("POST", "/api/conversations/{id}/messages", {"content": "hi"}),
        ("POST", "/api/conversations/{id}/messages/{mid}/regenerate", None),
        ("PUT", "/api/conversations/{id}/messages/{mid}", {"content": "edited"}),
        ("GET", "/api/conversations/{id}/tool-calls", None),
        ("POST", "/api/conversations/{id}/branch", {"message_id": "{mid}"}),
    ],
)
async def test_another_users_conversation_is_a_404_on_every_route(
    live: Live, method: str, path: str, body: dict[str, str] | None
) -> None:
    store = live.services.store
    convo = await store.create_conversation("alice", title="private")
    message = await store.add_message(
        "alice", convo.id, role="user", parts=[{"type": "text", "text": "secret"}], parent_id=None
    )
    url = path.format(id=convo.id, mid=message.id)
    payload = {k: v.format(mid=message.id) for k, v in body.items()} if body else None
    async with live.client("bob") as http:
        response = await http.request(method, url, json=payload)
    assert response.status_code == 404, response.text
    assert response.json()["error"]["code"] == "ERR_NOT_FOUND"
    still = await store.get_conversation("alice", convo.id)
    assert still.title == "private"
    branch = await store.branch("alice", convo.id, leaf_id=still.active_leaf_id)
    assert [m.id for m in branch] == [message.id]
    bobs, _ = await store.list_conversations("bob", limit=10)
    assert list(bobs) == []


async def test_bob_lists_none_of_alices_conversations(live: Live) -> None:
    async with live.client("alice") as alice, live.client("bob") as bob:
        for i in range(3):
            await alice.post("/api/conversations", json={"title": f"a{i}"})
        assert (await bob.get("/api/conversations")).json() == {"items": [], "next_cursor": None}
        assert len((await alice.get("/api/conversations")).json()["items"]) == 3


async def test_an_archived_conversation_leaves_the_default_list_and_comes_back(
    live_any_db: Live,
) -> None:
    async with live_any_db.client() as http:
        ids = [
            (await http.post("/api/conversations", json={"title": f"c{i}"})).json()["id"]
            for i in range(3)
        ]
        archived = await http.patch(f"/api/conversations/{ids[1]}", json={"status": "archived"})
        assert archived.status_code == 200, archived.text
        assert archived.json()["status"] == "archived"

        async def listed(status: str | None) -> list[tuple[str, str]]:
            params = {"status": status} if status else {}
            page = (await http.get("/api/conversations", params=params)).json()
            return [(c["id"], c["status"]) for c in page["items"]]

        assert await listed(None) == [(ids[2], "active"), (ids[0], "active")]
        assert await listed("active") == await listed(None)
        assert await listed("archived") == [(ids[1], "archived")]
        assert sorted(await listed("all")) == sorted(
            [(ids[0], "active"), (ids[1], "archived"), (ids[2], "active")]
        )
        assert (await http.get(f"/api/conversations/{ids[1]}")).json()["status"] == "archived"

        restored = await http.patch(f"/api/conversations/{ids[1]}", json={"status": "active"})
        assert restored.json()["status"] == "active"
        assert await listed("archived") == []
        assert {i for i, _ in await listed(None)} == set(ids)


@pytest.mark.parametrize("status", ["deleted", None, "", 1])
async def test_a_status_other_than_active_or_archived_is_a_validation_error(
    live: Live, status: object
) -> None:
    async with live.client() as http:
        cid = (await http.post("/api/conversations", json={"title": "t"})).json()["id"]
        bad = await http.patch(f"/api/conversations/{cid}", json={"status": status})
        assert bad.status_code == 422, bad.text
        assert bad.json()["error"]["code"] == "ERR_VALIDATION"
        assert bad.headers["x-error-code"] == "ERR_VALIDATION"
        assert (await http.get(f"/api/conversations/{cid}")).json()["status"] == "active"
        listed = await http.get("/api/conversations", params={"status": "deleted"})
        assert listed.status_code == 422, listed.text
        assert listed.json()["error"]["code"] == "ERR_VALIDATION"


async def test_editorchats_list_call_pages_by_skip_and_limit(live_any_db: Live) -> None:
    store = live_any_db.services.store
    made = [(await store.create_conversation("alice", title=f"c{i}")).id for i in range(45)]
    await store.update_conversation("alice", made[10], {"status": "archived"})
    active = [i for i in reversed(made) if i != made[10]]
    seen: list[str] = []
    async with live_any_db.client() as http:
        for skip in range(0, 60, 20):
            page = await http.get(f"/api/conversations?status=active&skip={skip}&limit=20")
            assert page.status_code == 200, page.text
            seen.extend(c["id"] for c in page.json()["items"])
        assert seen == active
        too_many = await http.get("/api/conversations?status=active&skip=0&limit=201")
        assert too_many.status_code == 422
        negative = await http.get("/api/conversations?skip=-1")
        assert negative.status_code == 422
        assert negative.json()["error"]["code"] == "ERR_VALIDATION"


async def test_bob_archives_and_lists_none_of_alices_conversations(live: Live) -> None:
    async with live.client("alice") as alice, live.client("bob") as bob:
        cid = (await alice.post("/api/conversations", json={"title": "a"})).json()["id"]
        taken = await bob.patch(f"/api/conversations/{cid}", json={"status": "archived"})
        assert taken.status_code == 404
        for status in ("active", "archived", "all"):
            page = (await bob.get("/api/conversations", params={"status": status})).json()
            assert page["items"] == [], status
        assert (await alice.get(f"/api/conversations/{cid}")).json()["status"] == "active"
