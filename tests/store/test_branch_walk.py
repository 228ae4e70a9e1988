"""The branch walks read their messages by primary key, however PostgreSQL's planner sees the
table: right after a long conversation is written its statistics are stale, and a walk that
joined back to the table by conversation read every message of it (3,000 rows for 32)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import Connection, TextClause, text

from parley.store import Store
from parley.store.conversations import set_leaf
from parley.store.db import create_engine, session_factory
from parley.store.messages import BRANCH, TAIL, insert_messages, message_values

USER = "walker"
SIZE, PAGE = 3_000, 32
PLANNERS = ("", "SET LOCAL enable_indexscan = off", "SET LOCAL enable_seqscan = off")


def _read(node: dict[str, Any]) -> int:
    """Rows of ``messages`` a plan's nodes read (kept or filtered out), over all their loops."""
    own = 0
    if node.get("Relation Name") == "messages":
        rows = node.get("Actual Rows", 0) + node.get("Rows Removed by Filter", 0)
        own = rows * node.get("Actual Loops", 1)
    return own + sum(_read(child) for child in node.get("Plans", []))


def _explain(conn: Connection, planner: str, statement: TextClause, params: dict[str, Any]) -> int:
    with conn.begin():
        if planner:
            conn.execute(text(planner))
        plan = conn.execute(text(f"EXPLAIN (ANALYZE, FORMAT JSON) {statement.text}"), params)
        found = plan.scalar()
    tree = found if isinstance(found, list) else json.loads(str(found))
    return _read(tree[0]["Plan"])


@pytest.mark.postgres
async def test_the_branch_walks_read_only_their_rows_whatever_the_statistics(
    postgres_migrated: str,
) -> None:
    store = Store(session_factory(create_engine(postgres_migrated, pool_size=1, max_overflow=0)))
    try:
        convo = await store.create_conversation(USER)
        rows: list[dict[str, Any]] = []
        for depth in range(SIZE):
            row = message_values(USER, convo.id, "user", [{"type": "text", "text": f"m{depth}"}])
            row.update(parent_id=rows[-1]["id"] if rows else None, depth=depth)
            rows.append(row)
        leaf = rows[-1]["id"]

        def write(conn: Connection) -> None:
            insert_messages(conn, rows)
            set_leaf(conn, USER, convo.id, leaf)

        await store.write(write)
        page = {"leaf": leaf, "conv": convo.id, "user": USER, "limit": PAGE, "floor": -1}
        tail = {"leaf": leaf, "conv": convo.id, "user": USER, "depth": SIZE - PAGE}
        walks = [(BRANCH.element, page), (TAIL, tail)]  # type: ignore[attr-defined]
        read = await store.read(
            lambda conn: [_explain(conn, p, s, a) for p in PLANNERS for s, a in walks]
        )
        assert max(read) <= PAGE + 2, read  # not the conversation's 3,000
        found = await store.branch(USER, convo.id, leaf_id=leaf, limit=PAGE)
        assert [m.id for m in found] == [r["id"] for r in rows[-PAGE:]]
        ids = await store.tail_ids(USER, convo.id, leaf, SIZE - PAGE)
        assert ids == [r["id"] for r in rows[-PAGE:]]
        assert await store.tail_ids("someone-else", convo.id, leaf, 0) == []
    finally:
        await store.close()
