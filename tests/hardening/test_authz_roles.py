"""The authorization matrix of a project's member, read from the live ``/openapi.json``: bob,
a ``read`` member of alice's project, on every operation that names the project, its
conversation or its run, with alice's real ids.

=========================================  ======  ==========================================
operation                                  status  why
=========================================  ======  ==========================================
``GET`` (reads, event streams)             200     read: conversations, messages, runs, audit
``POST /api/runs/{run_id}/ticket``         200     a ticket only reads the run's events
anything else                              403     write or admin: a member below it is told
=========================================  ======  ==========================================

Alice's rows are byte-for-byte unchanged afterwards. The non-member's side (a 404 everywhere)
is ``test_authz_matrix.py``'s.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from tests.conftest import Live
from tests.hardening.test_authz_matrix import (
    _body,
    _operations,
    _send,
    _snapshot,
    _url,
)
from tests.hardening.test_authz_matrix import (
    settings_overrides as settings_overrides,
)
from tests.hardening.test_authz_matrix import (
    tool_registry as tool_registry,
)

from parley.store.tables import Message
from parley.store.values import ElicitationAsk
from parley.store.values import PendingInput as NewPendingInput

PROJECT_ROUTES = ("/api/conversations/{", "/api/runs/{", "/api/projects/{")
READS = {("POST", "/api/runs/{run_id}/ticket")}


@pytest.fixture
async def shared(live: Live) -> dict[str, str]:
    """Alice's project with a conversation (a finished turn, a run waiting for approval, an
    elicitation), and bob in it as ``read``."""
    live.scripted.enqueue(
        [{"text": "Hello alice."}],
        [{"tool_call": {"name": "echo", "arguments": {"x": 1}, "id": "tc_alice"}}],
    )
    async with live.client("alice") as http:
        project = (await http.post("/api/projects", json={"name": "shared"})).json()["id"]
        body = {"title": "ours", "project_id": project}
        cid = (await http.post("/api/conversations", json=body)).json()["id"]
        await _send(http, cid, "hi", None)
        run_id = await _send(http, cid, "echo please", "awaiting_input")
        added = await http.put(f"/api/projects/{project}/members/bob", json={"role": "read"})
        assert added.status_code == 200, added.text
    async with live.services.store.sessions() as db:
        first = select(Message.id).where(Message.conversation_id == cid, Message.role == "user")
        message_id = (await db.execute(first.limit(1))).scalar_one()
    await live.services.store.add_pending(
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
    return {
        "conversation_id": cid,
        "message_id": message_id,
        "run_id": run_id,
        "tool_call_id": "tc_alice",
        "elicitation_id": "elic_alice",
        "project_id": project,
        "user_id": "alice",
    }


def _expected(method: str, path: str) -> int:
    return 200 if method == "GET" or (method, path) in READS else 403


async def test_a_read_member_reads_everything_of_the_project_and_changes_nothing(
    live: Live, shared: dict[str, str]
) -> None:
    before = await _snapshot(live)
    ops: list[tuple[str, str, dict[str, Any]]] = [
        op for op in await _operations(live) if op[1].startswith(PROJECT_ROUTES)
    ]
    assert len(ops) > 20, [path for _, path, _ in ops]
    wrong: list[str] = []
    async with live.client("bob") as http:
        for method, path, op in ops:
            url, body = _url(path, op, shared), _body(op, shared)
            async with http.stream(method, url, json=body) as response:  # events never end
                if response.status_code != _expected(method, path):
                    await response.aread()
                    wrong.append(f"{method} {path}: {response.status_code} {response.text[:160]}")
    assert not wrong, "\n".join(wrong)
    assert await _snapshot(live) == before
