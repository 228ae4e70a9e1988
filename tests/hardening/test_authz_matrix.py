"""The authorization matrix, read from the live ``/openapi.json`` so new routes are covered.

For every operation under ``/api``, ``/v1``, ``/sessions`` and ``/mcp``:

* no token, and a bad token: 401 (``/v1`` in OpenAI's error shape, ``/api/{user_id}/`` in the
  todo app's ``{"error": "<message>"}``, the rest in the contract shape);
* bob's token with alice's real ids in every path parameter: the status below, and alice's rows
  are byte-for-byte unchanged afterwards;
* a run ticket of alice's (``POST /api/runs/{run_id}/ticket``) in ``?ticket=`` and no token: a
  401 everywhere but that run's ``GET /api/runs/{run_id}/events``.

Allowed status for bob on alice's ids (DESIGN.md section 3):

=========================================  ======  ==================================================
operation                                  status  why
=========================================  ======  ==================================================
any route with a path parameter (default)  404     another user's row is never found, never a 403
``/api/{user_id}/…``                       403     the route names a user who is not the token's sub
``GET /api/chat/{chat_id}/stream``         204     resume answers "nothing to resume" for unknown ids
``GET /mcp/chat-v2/{chat_id}/stream``      204     the same resume, on the playground door
``GET /v1/models/{model_id}``              200     models are not a user's rows: any caller sees them
``PUT /api/mcp/servers/{name}/…``          200     a server is configuration: bob stores his own
``DELETE /api/mcp/servers/{name}/…``       204     and deletes his own (alice's stays)
``POST /api/mcp/servers/{name}/oauth/…``   400     bob's own flow; this server is not an OAuth one
=========================================  ======  ==================================================

The page's session cookie stands for a bearer token everywhere: a forged cookie is a 401 on
every operation, and bob's cookie session gets what bob's token gets. The doors one takes
without credentials (``POST /api/auth/signin`` and ``/signout``, and ``GET
/api/mcp/oauth/callback``, where a browser comes back from an authorization server and the
single-use state stands for the user) are left out here and tested in
``tests/api/test_accounts.py`` and ``tests/tools/test_mcp_oauth.py``.

Operations without a path parameter create bob's own rows, so only the read ones (GET) are sent
for bob: their answer must not mention any of alice's ids.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from tests.conftest import Live, auth, token
from tests.support.sse import collect, kinds
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from parley.accounts import COOKIE, CSRF_HEADER, hash_password
from parley.store.accounts import Accounts
from parley.store.tables import (
    ApprovalRule,
    Conversation,
    McpCredential,
    Message,
    PendingInput,
    Project,
    ProjectMember,
    Run,
    Task,
    ToolCall,
)
from parley.store.values import ElicitationAsk
from parley.store.values import PendingInput as NewPendingInput
from parley.tools.base import FunctionTool, ToolContext
from parley.tools.registry import ToolRegistry

PREFIXES = ("/api/", "/v1/", "/sessions", "/mcp/", "/chatkit", "/ag-ui")
TODO_APP = "/api/{user_id}/"
SPECIAL: dict[tuple[str, str], int] = {
    ("GET", "/api/chat/{chat_id}/stream"): 204,
    ("GET", "/mcp/chat-v2/{chat_id}/stream"): 204,
    ("GET", "/v1/models/{model_id}"): 200,
    ("PUT", "/api/mcp/servers/{name}/credentials"): 200,
    ("DELETE", "/api/mcp/servers/{name}/credentials"): 204,
    ("POST", "/api/mcp/servers/{name}/oauth/start"): 400,
}
TABLES = (
    *(Conversation, Message, Run, ToolCall, PendingInput, ApprovalRule, Task),
    *(Project, ProjectMember, McpCredential),
)
QUERY_IDS = {"chatId": "chat_id"}  # required query parameters, by the id of alice's they name
TICKET_OPENS = ("GET", "/api/runs/{run_id}/events")  # the one operation a run ticket opens
OPEN_DOORS = {
    ("POST", "/api/auth/signin"),
    ("POST", "/api/auth/signout"),
    ("GET", "/api/mcp/oauth/callback"),
}
BOB_PASSWORD = "bobs-password"
ALICES_CREDENTIAL = "alices-mcp-token-4c1d"
# a per-user MCP server, never connected (the registry is the test's): its credentials door
PER_USER = {"name": "forge", "url": "http://127.0.0.1:9/mcp", "credentials": "per_user"}


@dataclass
class Alice:
    """Alice's real ids, by path parameter name."""

    ids: dict[str, str]


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {
        "enable_chat_v2": True,
        "approvals": "all",
        "approval_timeout": 600.0,
        "secret_key": "matrix-" + "k" * 32,
        "mcp_servers": [PER_USER],
    }


@pytest.fixture
def tool_registry() -> ToolRegistry:
    async def echo(args: dict[str, Any], context: ToolContext) -> dict[str, Any]:
        return {"echo": args}

    registry = ToolRegistry()
    registry.register(FunctionTool("echo", echo, server="toy", requires_approval=True))
    return registry


async def _send(http: httpx.AsyncClient, cid: str, content: str, stop: str | None) -> str:
    response, events = await collect(
        http,
        "POST",
        f"/api/conversations/{cid}/messages",
        json_body={"content": content},
        stop_after=stop,
    )
    assert response.status_code == 200, response.text
    assert kinds(events)[-1] == (stop or "[DONE]"), kinds(events)
    return response.headers["x-run-id"]


@pytest.fixture
async def alice(live: Live) -> Alice:
    """A finished turn, a run waiting for approval, an elicitation, a rule, a session, a task,
    a project (with a conversation of its own), an MCP credential."""
    live.scripted.enqueue(
        [{"text": "Hello alice."}],
        [{"tool_call": {"name": "echo", "arguments": {"x": 1}, "id": "tc_alice"}}],
        [{"text": "unused until approved"}],
    )
    store = live.services.store
    async with live.client("alice") as http:
        cid = (await http.post("/api/conversations", json={"title": "secret"})).json()["id"]
        await _send(http, cid, "hi", None)
        run_id = await _send(http, cid, "echo please", "awaiting_input")
        session = (await http.post("/sessions", json={})).json()["session_id"]
        project = (await http.post("/api/projects", json={"name": "alice's"})).json()["id"]
        in_project = {"title": "shared", "project_id": project}
        assert (await http.post("/api/conversations", json=in_project)).status_code == 201
        credential = {"bearer": ALICES_CREDENTIAL}
        assert (await http.put("/api/mcp/servers/forge/credentials", json=credential)).is_success
    async with store.sessions() as db:
        first = select(Message.id).where(Message.conversation_id == cid, Message.role == "user")
        message_id = (await db.execute(first.limit(1))).scalar_one()
    rule = await store.add_rule("alice", "tool", "echo")
    task = await store.add_task("alice", "alice's task", None)
    await store.add_pending(
        NewPendingInput(
            id="elic_alice",
            kind="elicitation",
            run_id=run_id,
            user_id="alice",
            conversation_id=cid,
            payload=ElicitationAsk(message="alice's question"),
            expires_at=datetime.now(UTC) + timedelta(hours=1),
        )
    )
    ids = {
        "conversation_id": cid,
        "chat_id": cid,
        "session_id": session,
        "message_id": message_id,
        "run_id": run_id,
        "response_id": "resp_" + run_id.removeprefix("run_"),  # the Responses API's name for it
        "tool_call_id": "tc_alice",
        "elicitation_id": "elic_alice",
        "rule_id": str(rule.id),
        "task_id": str(task.id),
        "user_id": "alice",
        "model_id": "scripted/demo",
        "project_id": project,
        "name": "forge",  # a server's name: configuration, not alice's
        "credential": ALICES_CREDENTIAL,  # in no path: no read of bob's may show it
    }
    return Alice(ids=ids)


async def _operations(live: Live) -> list[tuple[str, str, dict[str, Any]]]:
    async with live.client(None) as http:
        spec = (await http.get("/openapi.json")).json()
    ops = [
        (method.upper(), path, op)
        for path, item in spec["paths"].items()
        if path.startswith(PREFIXES)
        for method, op in item.items()
        if method in {"get", "post", "put", "patch", "delete"}
        and (method.upper(), path) not in OPEN_DOORS
    ]
    assert any(path.startswith("/mcp/") for _, path, _ in ops), "chat-v2 should be mounted"
    return [(m, p, _resolve(op, spec)) for m, p, op in ops]


def _resolve(op: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    """The operation, with its request body schema resolved (``$ref``, ``anyOf`` with null)."""
    content = op.get("requestBody", {}).get("content", {}).get("application/json", {})
    schema = content.get("schema")
    if schema and "anyOf" in schema:
        schema = next(s for s in schema["anyOf"] if s.get("type") != "null")
    if schema and "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return {**op, "body_schema": schema}


FILLERS: dict[str, Any] = {
    "content": "hi",
    "message": "hi",
    "approved": True,
    "action": "decline",
    "model": "scripted/demo",
    "messages": [{"role": "user", "content": "hi"}],
    "code": "not-a-sign-in-code",
    "title": "bob's title",
    "type": "threads.list",  # the ChatKit door's one body (its ids are in it: see below)
    "params": {},
    "threadId": "bobs-thread",  # the AG-UI door's ids are in its body: see below
    "runId": "bobs-run",
    "name": "bob's project",
    "role": "admin",
    "bearer": "bobs-mcp-token",  # a credential is a bearer token or headers: one is needed
}
CHOSEN = ("bearer",)  # optional fields a minimal body still sets


def _body(op: dict[str, Any], ids: dict[str, str]) -> dict[str, Any] | None:
    """A minimal valid body: the required fields, plus a text ``content``/``message``."""
    schema = op["body_schema"]
    if schema is None:
        return None
    props = schema.get("properties", {})
    texts = {n for n in ("content", "message") if props.get(n, {}).get("type") == "string"}
    names = set(schema.get("required", [])) | texts | {n for n in CHOSEN if n in props}
    body: dict[str, Any] = {}
    for name in names:
        if name in ids:
            body[name] = ids[name]
        elif name in FILLERS:
            body[name] = FILLERS[name]
        else:
            raise AssertionError(f"no minimal value for required body field {name!r}: add one")
    return body


def _url(path: str, op: dict[str, Any], ids: dict[str, str]) -> str:
    names = [p["name"] for p in op.get("parameters", []) if p["in"] == "path"]
    unknown = [n for n in names if n not in ids]
    assert not unknown, f"{path}: cannot map path parameter(s) {unknown} to alice's ids; add them"
    return path.format(**{n: ids[n] for n in names})


def _query(path: str, op: dict[str, Any], ids: dict[str, str]) -> dict[str, str]:
    names = [p["name"] for p in op.get("parameters", []) if p["in"] == "query" and p["required"]]
    unknown = [n for n in names if QUERY_IDS.get(n) not in ids]
    assert not unknown, f"{path}: cannot map query parameter(s) {unknown} to alice's ids; add them"
    return {n: ids[QUERY_IDS[n]] for n in names}


def _expected(method: str, path: str) -> int:
    if (method, path) in SPECIAL:
        return SPECIAL[(method, path)]
    if path.startswith("/api/{user_id}/"):
        return 403
    return 404


async def _snapshot(live: Live) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of alice's, every column, per table."""
    rows: dict[str, list[tuple[Any, ...]]] = {}
    async with live.services.store.sessions() as session:
        for table in TABLES:
            whose = table.owner if table is Project else table.user_id
            result = await session.execute(select(table).where(whose == "alice"))
            columns = [c.key for c in table.__table__.columns]
            found = [tuple(getattr(r, c) for c in columns) for r in result.scalars()]
            rows[table.__tablename__] = sorted(found, key=repr)
    return rows


def _assert_401(response: httpx.Response, method: str, path: str) -> None:
    label = f"{method} {path}: {response.status_code} {response.text[:200]}"
    assert response.status_code == 401, label
    body = response.json()
    if path.startswith("/v1/"):
        assert isinstance(body["error"]["message"], str), body
    elif path.startswith(TODO_APP):  # the todo app prints ``data.error``
        assert isinstance(body["error"], str), body
        assert response.headers["x-error-code"] == "ERR_UNAUTHENTICATED", label
    else:
        assert body["success"] is False, body
        assert body["error"]["code"] == "ERR_UNAUTHENTICATED", body


async def test_every_operation_is_a_401_without_a_token_or_with_a_bad_one(
    live: Live, alice: Alice
) -> None:
    bad = {
        "missing": {},
        "bad": {"Authorization": "Bearer not-a-jwt"},
        "forged cookie": {"Cookie": f"{COOKIE}=forged", CSRF_HEADER: "parley"},
    }
    async with live.client(None) as http:
        for method, path, op in await _operations(live):
            url, body = _url(path, op, alice.ids), _body(op, alice.ids)
            for headers in bad.values():
                response = await http.request(method, url, json=body, headers=headers)
                _assert_401(response, method, path)


async def _bob(live: Live, via: str) -> httpx.AsyncClient:
    """A client of bob's: his bearer token, or the cookie his password signs in for."""
    if via == "token":
        return live.client("bob")
    await Accounts(live.services.store).add("bob", hash_password(BOB_PASSWORD))
    async with httpx.AsyncClient(base_url=live.url, headers={CSRF_HEADER: "parley"}) as http:
        body = {"user": "bob", "password": BOB_PASSWORD}
        signed_in = await http.post("/api/auth/signin", json=body)
    assert signed_in.status_code == 200, signed_in.text
    cookies = {COOKIE: signed_in.cookies[COOKIE]}
    return httpx.AsyncClient(
        base_url=live.url, headers={CSRF_HEADER: "parley"}, cookies=cookies, timeout=10
    )


@pytest.mark.parametrize("via", ["token", "cookie"])
async def test_bob_with_alices_ids_gets_the_contract_status_and_changes_nothing(
    live: Live, alice: Alice, via: str
) -> None:
    before = await _snapshot(live)
    assert all(before[t.__tablename__] for t in TABLES if t is not Task) and before["tasks"]
    wrong: list[str] = []
    async with await _bob(live, via) as http:
        for method, path, op in await _operations(live):
            if "{" not in path:
                continue
            url, body = _url(path, op, alice.ids), _body(op, alice.ids)
            response = await http.request(method, url, json=body)
            if response.status_code != _expected(method, path):
                wrong.append(f"{method} {path}: {response.status_code} {response.text[:160]}")
    assert not wrong, "\n".join(wrong)
    assert await _snapshot(live) == before


async def test_bobs_reads_without_path_parameters_never_mention_alices_ids(
    live: Live, alice: Alice
) -> None:
    secrets = {v for k, v in alice.ids.items() if k not in {"user_id", "model_id", "name"}}
    read: set[str] = set()
    async with live.client("bob") as http:
        for method, path, op in await _operations(live):
            if method != "GET" or "{" in path:
                continue
            read.add(path)
            response = await http.get(path, params=_query(path, op, alice.ids))
            assert response.status_code == 200, f"{path}: {response.text[:200]}"
            # whole ids only: alice's task id is a small number, the 1 of a limit's 10 is not it
            leaked = [
                s
                for s in secrets
                if re.search(rf"(?<![\w-]){re.escape(s)}(?![\w-])", response.text)
            ]
            assert not leaked, f"GET {path} shows bob alice's ids {leaked}"
    assert {"/api/approval-rules", "/api/profiles", "/api/limits", "/api/mcp/servers"} <= read


async def test_a_run_ticket_opens_that_runs_events_and_no_other_operation(
    live: Live, alice: Alice
) -> None:
    run_events = TICKET_OPENS[1].format(run_id=alice.ids["run_id"])
    async with live.client("alice") as http:
        issued = await http.post(f"/api/runs/{alice.ids['run_id']}/ticket")
    ticket = issued.json()["ticket"]
    async with live.client(None) as http:
        async with http.stream("GET", run_events, params={"ticket": ticket}) as opened:
            assert opened.status_code == 200  # control: the ticket itself is good
        for method, path, op in await _operations(live):
            if (method, path) == TICKET_OPENS:
                continue
            url, body = _url(path, op, alice.ids), _body(op, alice.ids)
            params = {**_query(path, op, alice.ids), "ticket": ticket}
            response = await http.request(method, url, json=body, params=params)
            _assert_401(response, method, path)


@pytest.mark.parametrize(("jwt", "code"), [(None, 4401), ("not-a-jwt", 4401), (token("bob"), 4403)])
async def test_the_progress_socket_of_alice_refuses_other_tokens(
    live: Live, jwt: str | None, code: int
) -> None:
    url = live.url.replace("http://", "ws://") + "/ws/alice/chat"
    if jwt is not None:
        url += f"?token={jwt}"
    async with connect(url, open_timeout=5) as socket:
        with pytest.raises(ConnectionClosed) as closed:
            await socket.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == code


def _chatkit_requests(ids: dict[str, str]) -> list[dict[str, Any]]:
    """Every ChatKit operation that names a thread or an item, with alice's ids."""
    thread, item = ids["conversation_id"], ids["message_id"]
    message = {"content": [{"type": "input_text", "text": "hi"}], "attachments": []}
    message["inference_options"] = {}
    action = {"type": "parley.approval", "payload": {"tool_call_id": "tc_alice", "approved": True}}
    params: dict[str, dict[str, Any]] = {
        "threads.get_by_id": {"thread_id": thread},
        "threads.add_user_message": {"thread_id": thread, "input": message},
        "threads.add_client_tool_output": {"thread_id": thread, "result": {}},
        "threads.retry_after_item": {"thread_id": thread, "item_id": item},
        "threads.custom_action": {"thread_id": thread, "item_id": item, "action": action},
        "items.list": {"thread_id": thread, "after": item},
        "items.feedback": {"thread_id": thread, "item_ids": [item], "kind": "positive"},
        "threads.update": {"thread_id": thread, "title": "bob's title"},
        "threads.delete": {"thread_id": thread},
    }
    return [{"type": kind, "params": p} for kind, p in params.items()]


async def test_bob_naming_alices_thread_on_the_chatkit_door_finds_nothing(
    live: Live, alice: Alice
) -> None:
    """The ChatKit door carries its ids in the body: each operation on alice's thread is a
    404 for bob, and changes nothing; his list of threads is empty."""
    before = await _snapshot(live)
    async with live.client("bob") as http:
        for body in _chatkit_requests(alice.ids):
            response = await http.post("/chatkit", json=body)
            assert response.status_code == 404, (body["type"], response.text[:200])
            assert response.json()["error"]["code"] == "ERR_NOT_FOUND"
        listed = await http.post("/chatkit", json={"type": "threads.list", "params": {}})
    assert listed.json() == {"data": [], "has_more": False}
    assert await _snapshot(live) == before
    async with live.client("alice") as http:  # control: the same ids are alice's
        mine = await http.post("/chatkit", json=_chatkit_requests(alice.ids)[0])
    assert mine.status_code == 200 and mine.json()["id"] == alice.ids["conversation_id"]


async def test_bob_naming_alices_conversation_as_an_ag_ui_thread_gets_his_own(
    live: Live, alice: Alice
) -> None:
    """The AG-UI door carries its thread in the body: alice's conversation id as bob's
    ``threadId`` starts a thread of his own, and resuming alice's approval there is a 404."""
    before = await _snapshot(live)
    live.scripted.enqueue([{"text": "Hello bob."}])
    thread = alice.ids["conversation_id"]
    said = {"threadId": thread, "runId": "r1"}
    said["messages"] = [{"id": "m1", "role": "user", "content": "hi"}]
    resume = {"threadId": thread, "runId": "r2", "messages": []}
    resume["resume"] = [{"interruptId": "tc_alice", "status": "resolved", "payload": True}]
    async with live.client("bob") as http:
        refused = await http.post("/ag-ui", json=resume)
        response, events = await collect(http, "POST", "/ag-ui", json_body=said)
    started = events[0].data
    assert response.status_code == 200 and started["type"] == "RUN_STARTED"
    assert started["metadata"]["parley"]["conversationId"] != thread
    snapshot = events[1].data["messages"]
    assert [(m["role"], m["content"]) for m in snapshot] == [("user", "hi")]  # none of alice's
    assert refused.status_code == 404, refused.text
    assert refused.json()["error"]["code"] == "ERR_NOT_FOUND"
    assert await _snapshot(live) == before


async def test_the_matrix_really_exercises_the_owner(live: Live, alice: Alice) -> None:
    """Control: alice herself reads her conversation, so bob's 404s are not an artefact."""
    async with live.client(None) as http:
        path = f"/api/conversations/{alice.ids['conversation_id']}"
        assert (await http.get(path, headers=auth("alice"))).status_code == 200
        assert (await http.get(path, headers=auth("bob"))).status_code == 404
