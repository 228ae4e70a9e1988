"""Through the Vercel doors, a regeneration, an edit and an ai@4 reload deep in a long
conversation read as many rows and run as many statements at 1,000 messages as at 3,000: the
door finds the message the client means from the leaf, never by reading the whole branch."""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import pytest
from sqlalchemy import Connection
from tests.conftest import Live
from tests.support.reads import Reads

from parley.providers.scripted import ScriptedProvider
from parley.store.conversations import set_leaf
from parley.store.messages import insert_messages, message_values

USER = "alice"
WORDS = " ".join(f"word{j}" for j in range(20))


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    window = {"context_window": 2_048, "output_reserve": 256}
    return {"models": {"scripted/demo": window}, "summary_after": 0, "enable_chat_v2": True}


async def _line(live: Live, convo_id: str, size: int) -> list[dict[str, Any]]:
    """A branch of ``size`` messages, a question then its reply, made the active one."""
    rows: list[dict[str, Any]] = []
    for depth in range(size):
        role = "user" if depth % 2 == 0 else "assistant"
        text = f"message {depth}: {WORDS}"
        row = message_values(USER, convo_id, role, [{"type": "text", "text": text}])
        row.update(parent_id=rows[-1]["id"] if rows else None, depth=depth)
        rows.append(row)

    def write(conn: Connection) -> None:
        insert_messages(conn, rows)
        set_leaf(conn, USER, convo_id, rows[-1]["id"])

    await live.services.store.write(write)
    return rows


def _v5(row: dict[str, Any], text: str | None = None) -> dict[str, Any]:
    """A message as a v5+ client holds it: parley's id on replies, its own on questions."""
    ident = row["id"] if row["role"] == "assistant" else f"client-{row['depth']}"
    said = text if text is not None else row["text"]
    return {"id": ident, "role": row["role"], "parts": [{"type": "text", "text": said}]}


def _ai4(message: dict[str, Any]) -> dict[str, Any]:
    """The same message as ai@4's ``useChat`` sends it: its text in ``content`` too."""
    return {**message, "content": message["parts"][0]["text"]}


async def _post(live: Live, http: httpx.AsyncClient, url: str, payload: dict[str, Any]) -> None:
    """One request, read to its end, and its run waited for (its last writes counted too)."""
    async with http.stream("POST", url, json=payload) as response:
        await response.aread()
        assert response.status_code == 200, response.text
    runs = live.services.runs
    with anyio.fail_after(10):
        for run_id in runs.local_run_ids():
            await runs.wait(run_id)  # type: ignore[attr-defined]


async def test_the_vercel_doors_read_the_same_rows_at_any_length(
    live_any_db: Live, scripted: ScriptedProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    live = live_any_db
    store = live.services.store
    reads = Reads(store, monkeypatch, ("branch", "tail_roles", "get_message"))
    seen: dict[int, list[tuple[int, int]]] = {}
    for size in (1_000, 3_000):
        convo = await store.create_conversation(USER)
        rows = await _line(live, convo.id, size)
        client = [_v5(r) for r in rows]
        edited = [*client[: size - 2], _v5(rows[size - 2], "edited: q")]
        asks = {
            "regenerate": (
                "/api/chat",
                {"id": convo.id, "messages": client[:-1], "trigger": "regenerate-message"},
            ),
            "edit": (
                "/api/chat",
                {"id": convo.id, "messages": edited, "messageId": f"client-{size - 2}"},
            ),
            # ai@4's reload(): the chat without its last reply, the same question at its end
            "ai4 reload": ("/mcp/chat-v2", {"id": convo.id, "messages": [_ai4(m) for m in edited]}),
        }
        seen[size] = []
        async with live.client() as http:
            for what, (url, payload) in asks.items():
                scripted.enqueue([{"text": f"answer: {what}"}])
                with reads:
                    await _post(live, http, url, payload)
                seen[size].append((reads.statements, reads.rows))
        fresh = await store.get_conversation(USER, convo.id)
        branch = await store.branch(USER, convo.id, leaf_id=fresh.active_leaf_id, limit=3)
        assert [m.text.split(":")[0] for m in branch] == [
            f"message {size - 3}",
            "edited",
            "answer",
        ]
        assert branch[-1].text == "answer: ai4 reload"
        siblings = await store.children(USER, convo.id, rows[size - 2]["id"])
        assert [m.text for m in siblings] == [rows[size - 1]["text"], "answer: regenerate"]
        assert all(rows < 200 for _, rows in seen[size]), seen[size]
    assert seen[1_000] == seen[3_000]
