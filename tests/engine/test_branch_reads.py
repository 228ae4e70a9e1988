"""A regeneration or an edit deep in a long conversation reads a bounded part of its branch, as a
turn does, and the model sees that branch: its own, not the active one."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Connection
from tests.conftest import Live
from tests.support.reads import Reads

from parley.auth import Principal
from parley.engine.requests import TurnRequest
from parley.providers.scripted import ScriptedProvider
from parley.store.conversations import set_leaf
from parley.store.messages import insert_messages, message_values

USER = "alice"


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    window = {"context_window": 2_048, "output_reserve": 256}
    return {"models": {"scripted/demo": window}, "summary_after": 0}


def _row(convo_id: str, depth: int, parent: str | None, text: str) -> dict[str, Any]:
    role = "user" if depth % 2 == 0 else "assistant"
    row = message_values(USER, convo_id, role, [{"type": "text", "text": text}])
    row.update(parent_id=parent, depth=depth)
    return row


async def _tree(live: Live, convo_id: str, size: int) -> dict[str, str]:
    """A main line of ``size`` messages (the active one, ending with a reply) and, under its
    message ``size - 4``, a side branch of three ("side 0" to "side 2", a reply, a question and
    a reply); their ids by text."""
    rows: list[dict[str, Any]] = []
    parent: str | None = None
    for depth in range(size):
        words = " ".join(f"word{j}" for j in range(20))
        rows.append(_row(convo_id, depth, parent, f"message {depth}: {words}"))
        parent = rows[-1]["id"]
    parent = rows[size - 4]["id"]
    for k in range(3):
        rows.append(_row(convo_id, size - 3 + k, parent, f"side {k}"))
        parent = rows[-1]["id"]
    leaf = rows[size - 1]["id"]

    def write(conn: Connection) -> None:
        insert_messages(conn, rows)
        set_leaf(conn, USER, convo_id, leaf)

    await live.services.store.write(write)
    return {str(r["text"]).split(":")[0]: str(r["id"]) for r in rows}


def _said(scripted: ScriptedProvider) -> list[str]:
    """What the model was last sent, each message's text up to its colon."""
    return [str(m.content).split(":")[0] for m in scripted.requests[-1].messages]


async def test_regenerations_and_edits_read_the_same_rows_at_any_length_and_see_their_branch(
    live_any_db: Live, scripted: ScriptedProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    live = live_any_db
    engine, store = live.services.engine, live.services.store
    reads = Reads(store, monkeypatch, ("branch", "tail_ids"))
    seen: dict[int, list[tuple[int, int]]] = {}
    for size in (1_000, 3_000):
        convo = await store.create_conversation(USER)
        ids = await _tree(live, convo.id, size)
        asks = {
            "regenerate the reply": TurnRequest(
                mode="regenerate", target_id=ids[f"message {size - 1}"]
            ),
            "edit the last question": TurnRequest(
                mode="edit", target_id=ids[f"message {size - 2}"], content="edited: q"
            ),
            "regenerate on the side branch": TurnRequest(
                mode="regenerate", target_id=ids["side 2"]
            ),
        }
        seen[size] = []
        for what, request in asks.items():
            with reads:
                turn = await engine.prepare(Principal(USER), convo.id, request)
            seen[size].append((reads.statements, reads.rows))
            scripted.enqueue([{"text": f"answer: {what}"}])
            async for _ in engine.run(turn):
                pass
            said = _said(scripted)
            if what == "regenerate the reply":
                assert said[-3:] == [
                    f"message {size - 4}",
                    f"message {size - 3}",
                    f"message {size - 2}",
                ]
                assert turn.side_effects == []
            elif what == "edit the last question":
                assert said[-2:] == [f"message {size - 3}", "edited"]
            else:  # its own branch: the side messages, then the main line below them
                assert said[-3:] == [f"message {size - 4}", "side 0", "side 1"]
        assert all(rows < 200 for _, rows in seen[size]), seen[size]
    assert seen[1_000] == seen[3_000]
