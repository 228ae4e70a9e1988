"""Projects: conversations shared by role, on SQLite and PostgreSQL (issue 26).

A member with ``read`` reads a project's conversations, messages, runs and tool-call audit; one
with ``write`` also sends; ``admin`` manages members and renames or deletes. Whoever reaches
nothing of a project (a non-member, a removed member, a member whose token is of another
organisation) gets a 404 on every route and door; a member below the role a route needs, a 403.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy import func, select
from tests.conftest import SECRET, Live
from tests.support.sse import collect, kinds, text

from parley.auth import TokenVerifier
from parley.store.tables import Conversation, Message, ProjectMember, Run
from parley.tools.base import FunctionTool, ToolContext
from parley.tools.registry import ToolRegistry


def org_token(user: str, org: str | None = None, claim: str = "org_id") -> str:
    now = int(time.time())
    claims: dict[str, Any] = {"sub": user, "iat": now, "exp": now + 600}
    if org is not None:
        claims[claim] = org
    return jwt.encode(claims, SECRET, algorithm="HS256")


def client(live: Live, user: str, org: str | None = None) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {org_token(user, org)}"}
    return httpx.AsyncClient(base_url=live.url, headers=headers, timeout=10)


@pytest.fixture
def tool_registry() -> ToolRegistry:
    async def whoami(args: dict[str, Any], context: ToolContext) -> dict[str, Any]:
        return {"user": context.user_id}

    registry = ToolRegistry()
    registry.register(FunctionTool("whoami", whoami, read_only=True))
    return registry


async def _project(http: httpx.AsyncClient, **fields: Any) -> str:
    created = await http.post("/api/projects", json={"name": "shared", **fields})
    assert created.status_code == 201, created.text
    assert created.json()["role"] == "admin"
    project_id: str = created.json()["id"]
    return project_id


async def _conversation(http: httpx.AsyncClient, project_id: str) -> str:
    created = await http.post("/api/conversations", json={"title": "t", "project_id": project_id})
    assert created.status_code == 201, created.text
    assert created.json()["project_id"] == project_id
    cid: str = created.json()["id"]
    return cid


async def _send(http: httpx.AsyncClient, cid: str, content: str) -> httpx.Response:
    body = {"content": content, "stream": False}
    return await http.post(f"/api/conversations/{cid}/messages", json=body)


async def _set_role(http: httpx.AsyncClient, project_id: str, user: str, role: str) -> None:
    put = await http.put(f"/api/projects/{project_id}/members/{user}", json={"role": role})
    assert put.status_code == 200, put.text
    assert put.json()["user_id"] == user and put.json()["role"] == role


async def _count(live: Live, table: Any, **where: Any) -> int:
    stmt = select(func.count()).select_from(table)
    for name, value in where.items():
        stmt = stmt.where(getattr(table, name) == value)
    async with live.services.store.sessions() as db:
        return int((await db.execute(stmt)).scalar_one())


def _assert_error(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text
    codes = {400: "ERR_VALIDATION", 422: "ERR_VALIDATION", 403: "ERR_FORBIDDEN"}
    code = {**codes, 404: "ERR_NOT_FOUND", 409: "ERR_CONFLICT"}[status]
    assert response.json()["error"]["code"] == code, response.text


async def _reaches_nothing(http: httpx.AsyncClient, project_id: str, cid: str, run: str) -> None:
    """Every read and write of the project and its conversation is a 404."""
    for method, path in [
        ("GET", f"/api/projects/{project_id}"),
        ("PATCH", f"/api/projects/{project_id}"),
        ("DELETE", f"/api/projects/{project_id}"),
        ("PUT", f"/api/projects/{project_id}/members/mallory"),
        ("DELETE", f"/api/projects/{project_id}/members/alice"),
        ("GET", f"/api/conversations/{cid}"),
        ("GET", f"/api/conversations/{cid}/messages"),
        ("GET", f"/api/conversations/{cid}/tool-calls"),
        ("PATCH", f"/api/conversations/{cid}"),
        ("DELETE", f"/api/conversations/{cid}"),
        ("POST", f"/api/conversations/{cid}/messages"),
        ("GET", f"/api/runs/{run}"),
        ("GET", f"/api/runs/{run}/events"),
        ("POST", f"/api/runs/{run}/ticket"),
        ("POST", f"/api/runs/{run}/cancel"),
        ("GET", f"/sessions/{cid}"),
    ]:
        body = {"content": "hi", "name": "x", "role": "admin", "title": "x"}
        response = await http.request(method, path, json=body)
        assert response.status_code == 404, (method, path, response.text)
    listed = await http.get("/api/conversations", params={"project_id": project_id})
    _assert_error(listed, 404)
    created = await http.post("/api/conversations", json={"project_id": project_id})
    _assert_error(created, 404)
    assert project_id not in (await http.get("/api/projects")).text


async def test_alice_shares_a_project_with_bob_as_read_then_write_then_removes_him(
    live_any_db: Live,
) -> None:
    live = live_any_db
    live.scripted.enqueue([{"text": "Hello alice."}], [{"text": "Hello bob."}])
    async with client(live, "alice") as alice, client(live, "bob") as bob:
        project_id = await _project(alice, description="our work")
        cid = await _conversation(alice, project_id)
        sent = await _send(alice, cid, "hi")
        assert sent.status_code == 200, sent.text
        run_id = sent.json()["run_id"]
        await _reaches_nothing(bob, project_id, cid, run_id)  # not a member yet

        await _set_role(alice, project_id, "bob", "read")
        mine = (await bob.get("/api/projects")).json()["items"]
        assert [(p["id"], p["role"]) for p in mine] == [(project_id, "read")]
        listed = await bob.get("/api/conversations", params={"project_id": project_id})
        assert [c["id"] for c in listed.json()["items"]] == [cid]
        read = await bob.get(f"/api/conversations/{cid}")
        assert read.status_code == 200 and read.json()["role"] == "read"
        assert [m["role"] for m in read.json()["messages"]] == ["user", "assistant"]
        assert (await bob.get(f"/api/conversations/{cid}/tool-calls")).status_code == 200
        _, replayed = await collect(bob, "GET", f"/api/runs/{run_id}/events")
        assert text(replayed) == "Hello alice."
        assert cid not in (await bob.get("/api/conversations")).text  # his own list: his own
        before = await _count(live, Message, conversation_id=cid)
        _assert_error(await _send(bob, cid, "may I?"), 403)
        _assert_error(await bob.post(f"/api/runs/{run_id}/cancel"), 403)
        _assert_error(await bob.patch(f"/api/projects/{project_id}", json={"name": "mine"}), 403)
        _assert_error(await bob.put(f"/api/projects/{project_id}/members/eve", json={}), 422)
        role = {"role": "read"}
        _assert_error(await bob.put(f"/api/projects/{project_id}/members/eve", json=role), 403)
        assert await _count(live, Message, conversation_id=cid) == before

        await _set_role(alice, project_id, "bob", "write")
        response, events = await collect(
            bob, "POST", f"/api/conversations/{cid}/messages", json_body={"content": "me too"}
        )
        assert response.status_code == 200, response.text
        assert kinds(events)[-1] == "[DONE]" and text(events) == "Hello bob."
        await live.services.runs.wait(response.headers["x-run-id"])
        seen = (await alice.get(f"/api/conversations/{cid}")).json()["messages"]
        said = ["".join(p.get("text", "") for p in m["parts"]) for m in seen[-2:]]
        assert said == ["me too", "Hello bob."]
        _assert_error(await bob.delete(f"/api/conversations/{cid}"), 403)  # admin's
        fork = await bob.post(f"/api/conversations/{cid}/fork", json={"message_id": seen[-1]["id"]})
        assert fork.status_code == 201 and fork.json()["project_id"] == project_id, fork.text
        shared = await alice.get("/api/conversations", params={"project_id": project_id})
        assert {c["id"] for c in shared.json()["items"]} == {cid, fork.json()["id"]}

        removed = await alice.delete(f"/api/projects/{project_id}/members/bob")
        assert removed.status_code == 204, removed.text
        await _reaches_nothing(bob, project_id, cid, response.headers["x-run-id"])
        await _reaches_nothing(bob, project_id, fork.json()["id"], response.headers["x-run-id"])
        assert await _count(live, Message, conversation_id=cid) == 4


async def test_carol_of_another_organisation_gets_404_even_when_added(live_any_db: Live) -> None:
    live = live_any_db
    live.scripted.enqueue([{"text": "Hi."}], [{"text": "Hi dave."}])
    async with client(live, "alice", "acme") as alice:
        project_id = await _project(alice)
        assert (await alice.get(f"/api/projects/{project_id}")).json()["org_id"] == "acme"
        cid = await _conversation(alice, project_id)
        run_id = (await _send(alice, cid, "hi")).json()["run_id"]
        for member in ("carol", "dave"):
            await _set_role(alice, project_id, member, "admin")
    async with client(live, "carol", "globex") as carol:
        await _reaches_nothing(carol, project_id, cid, run_id)
    async with client(live, "alice") as alice_without_org:  # members or not
        await _reaches_nothing(alice_without_org, project_id, cid, run_id)
    async with client(live, "dave", "acme") as dave:  # control: the same org reaches it
        assert (await dave.get(f"/api/projects/{project_id}")).status_code == 200
        assert (await _send(dave, cid, "and me")).status_code == 200
    assert await _count(live, ProjectMember, project_id=project_id) == 3


async def test_a_members_turn_runs_tools_as_that_member_and_is_kept_with_the_conversation(
    live_any_db: Live,
) -> None:
    """bob writes in alice's project conversation: the tool acts for bob (his user id), while
    the rows stay kept under alice's conversation, where every member reads them."""
    live = live_any_db
    live.scripted.enqueue(
        [{"tool_call": {"name": "whoami", "arguments": {}, "id": "tc_1"}}], [{"text": "Done."}]
    )
    async with client(live, "alice") as alice, client(live, "bob") as bob:
        project_id = await _project(alice)
        cid = await _conversation(alice, project_id)
        await _set_role(alice, project_id, "bob", "write")
        sent = await _send(bob, cid, "who am I?")
        assert sent.status_code == 200, sent.text
        calls = (await alice.get(f"/api/conversations/{cid}/tool-calls")).json()["items"]
    assert [(c["tool_name"], c["result"]) for c in calls] == [("whoami", {"user": "bob"})]
    assert await _count(live, Run, conversation_id=cid, user_id="alice") == 1


async def test_project_instructions_and_default_profile_shape_its_turns(
    live_any_db: Live,
) -> None:
    live = live_any_db
    live.scripted.enqueue([{"text": "Arr."}])
    async with client(live, "alice") as alice:
        project_id = await _project(
            alice, instructions="Speak like a pirate.", default_profile="todo"
        )
        cid = await _conversation(alice, project_id)
        assert (await _send(alice, cid, "hi")).status_code == 200
    request = live.scripted.requests[-1]
    system = request.messages[0]
    assert system.role == "system"
    assert str(system.content).startswith("Speak like a pirate.\n\nYou are a task assistant.")
    assert "whoami" not in {t.name for t in request.tools}  # the todo profile's tools only


async def test_admins_rename_and_delete_the_project_with_its_conversations(
    live_any_db: Live,
) -> None:
    live = live_any_db
    live.scripted.enqueue([{"text": "Hi."}])
    async with client(live, "alice") as alice, client(live, "bob") as bob:
        project_id = await _project(alice)
        cid = await _conversation(alice, project_id)
        assert (await _send(alice, cid, "hi")).status_code == 200
        await _set_role(alice, project_id, "bob", "admin")
        renamed = await bob.patch(f"/api/projects/{project_id}", json={"name": "renamed"})
        assert renamed.status_code == 200 and renamed.json()["name"] == "renamed"
        _assert_error(await bob.patch(f"/api/projects/{project_id}", json={"name": None}), 400)
        members = (await alice.get(f"/api/projects/{project_id}")).json()["members"]
        assert {(m["user_id"], m["role"]) for m in members} == {
            ("alice", "admin"),
            ("bob", "admin"),
        }
        deleted = await bob.delete(f"/api/projects/{project_id}")
        assert deleted.status_code == 204, deleted.text
        _assert_error(await alice.get(f"/api/conversations/{cid}"), 404)
        _assert_error(await alice.get(f"/api/projects/{project_id}"), 404)
    assert await _count(live, Conversation, id=cid) == 0
    assert await _count(live, Message, conversation_id=cid) == 0
    assert await _count(live, ProjectMember, project_id=project_id) == 0


async def test_a_project_keeps_an_admin(live_any_db: Live) -> None:
    async with client(live_any_db, "alice") as alice:
        project_id = await _project(alice)
        _assert_error(await alice.delete(f"/api/projects/{project_id}/members/alice"), 409)
        demoted = {"role": "write"}
        put = await alice.put(f"/api/projects/{project_id}/members/alice", json=demoted)
        _assert_error(put, 409)
        _assert_error(await alice.delete(f"/api/projects/{project_id}/members/nobody"), 404)
        assert (await alice.get(f"/api/projects/{project_id}")).json()["role"] == "admin"


async def test_the_other_doors_ask_the_same_question(live_any_db: Live) -> None:
    """A read member reads through the seed doors and is refused their writes with a 403; a
    write member chats through the Vercel door."""
    live = live_any_db
    live.scripted.enqueue([{"text": "Hi."}], [{"text": "Via Vercel."}])
    async with client(live, "alice") as alice, client(live, "bob") as bob:
        project_id = await _project(alice)
        cid = await _conversation(alice, project_id)
        run_id = (await _send(alice, cid, "hi")).json()["run_id"]
        await _set_role(alice, project_id, "bob", "read")
        session = await bob.get(f"/sessions/{cid}")
        assert session.status_code == 200 and len(session.json()["messages"]) == 2
        ticket = await bob.post(f"/api/runs/{run_id}/ticket")
        assert ticket.status_code == 200, ticket.text
        _assert_error(await bob.post(f"/sessions/{cid}/chat", json={"message": "hi"}), 403)
        ui = {"id": cid, "trigger": "submit-message"}
        ui["messages"] = [{"id": "u1", "role": "user", "parts": [{"type": "text", "text": "yo"}]}]
        _assert_error(await bob.post("/api/chat", json=ui), 403)
        todo = await bob.post("/api/bob/chat", json={"message": "hi", "conversation_id": cid})
        assert todo.status_code == 403 and todo.headers["x-error-code"] == "ERR_FORBIDDEN"
        await _set_role(alice, project_id, "bob", "write")
        response, events = await collect(bob, "POST", "/api/chat", json_body=ui)
        assert response.status_code == 200, response.text
        deltas = [e.data for e in events if isinstance(e.data, dict)]
        assert "".join(d.get("delta", "") for d in deltas) == "Via Vercel."
    anonymous = httpx.AsyncClient(base_url=live.url, timeout=10)
    async with anonymous:
        opened = await anonymous.get(
            f"/api/runs/{run_id}/events", params={"ticket": ticket.json()["ticket"]}
        )
    assert opened.status_code == 200, opened.text


async def test_the_organisation_claim_is_read_from_the_configured_claim() -> None:
    verifier = TokenVerifier(secret=SECRET, org_claim="https://example.com/tenant")
    tenant = org_token("alice", "acme", claim="https://example.com/tenant")
    assert (await verifier.verify(tenant)).org_id == "acme"
    assert (await verifier.verify(org_token("alice", "acme"))).org_id is None  # not that claim
    plain = TokenVerifier(secret=SECRET)
    assert (await plain.verify(org_token("alice", "acme"))).org_id == "acme"
