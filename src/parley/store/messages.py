"""Messages: the tree of a conversation, read by branch (leaf up to the root) and page.

Every statement takes the user id and puts it in its WHERE clause.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, insert, or_, select, text

from parley.chat.ids import new_id
from parley.chat.messages import Part, text_of
from parley.errors import NotFound
from parley.store import tables
from parley.store.base import StoreBase
from parley.store.conversations import (
    CONVERSATION_FIELDS,
    conversation,
    new_conversation,
    set_leaf,
)
from parley.store.values import Conversation, Message, utcnow

M = tables.messages.c
_COLUMNS = [c.name for c in tables.messages.columns]
# Walk ``parent_id`` up from the leaf and return the branch's messages, oldest first, in one
# statement. Each step is a primary-key lookup carrying the whole row, and the owner is checked
# on the way out on the rows carried, with no second look at the table: with the owner in the
# step, PostgreSQL on stale statistics scanned the whole conversation at every step; joined
# back to the table on the way out, it scanned the whole conversation once (10,000 messages:
# 80 ms, against 0.2 ms by primary key). The walk stops after ``limit`` messages or above
# ``floor`` (a depth): a turn reads the newest messages of its branch, down to what the
# conversation's summary covers, never the rest.
BRANCH = text(
    f"""
    WITH RECURSIVE branch({", ".join(_COLUMNS)}, n) AS (
        SELECT {", ".join(_COLUMNS)}, 1 FROM messages
         WHERE id = :leaf AND conversation_id = :conv AND user_id = :user AND depth > :floor
        UNION ALL
        SELECT {", ".join(f"m.{c}" for c in _COLUMNS)}, b.n + 1
          FROM branch b JOIN messages m ON m.id = b.parent_id
         WHERE b.n < :limit AND m.depth > :floor
    )
    SELECT {", ".join(_COLUMNS)} FROM branch
     WHERE conversation_id = :conv AND user_id = :user
     ORDER BY n DESC
    """
).columns(*tables.messages.columns)


# The id of the message at ``depth`` on the branch through ``start``, reading ids only and at
# most ``limit`` of them: whether a summary's message is on a branch.
ANCESTOR = text(
    """
    WITH RECURSIVE up(id, parent_id, depth, n) AS (
        SELECT id, parent_id, depth, 1 FROM messages
         WHERE id = :start AND conversation_id = :conv AND user_id = :user
        UNION ALL
        SELECT m.id, m.parent_id, m.depth, u.n + 1
          FROM up u JOIN messages m ON m.id = u.parent_id
         WHERE u.n < :limit AND m.depth >= :depth
    )
    SELECT id FROM up WHERE depth = :depth
    """
)


# The ids and roles of the branch from ``leaf`` up to ``depth`` (oldest first): what a
# regeneration or an edit at that depth replaces, when its message is the first of them, and
# where a client's message list meets the branch. Reads ids and roles only, and only from the
# leaf up to that depth by primary key, never the rest (the owner checked as BRANCH).
TAIL = text(
    """
    WITH RECURSIVE up(id, parent_id, conversation_id, user_id, role, n) AS (
        SELECT id, parent_id, conversation_id, user_id, role, 1 FROM messages
         WHERE id = :leaf AND conversation_id = :conv AND user_id = :user AND depth >= :depth
        UNION ALL
        SELECT m.id, m.parent_id, m.conversation_id, m.user_id, m.role, u.n + 1
          FROM up u JOIN messages m ON m.id = u.parent_id
         WHERE m.depth >= :depth
    )
    SELECT id, role FROM up WHERE conversation_id = :conv AND user_id = :user ORDER BY n DESC
    """
)


def message(conn: Connection, user_id: str, conversation_id: str, message_id: str) -> Message:
    """The user's message in that conversation, or :class:`NotFound`."""
    stmt = select(tables.messages).where(
        M.id == message_id, M.conversation_id == conversation_id, M.user_id == user_id
    )
    row = conn.execute(stmt).mappings().first()
    if row is None:
        raise NotFound("message not found")
    return Message(**row)


def branch_rows(
    conn: Connection,
    user_id: str,
    conversation_id: str,
    leaf_id: str,
    limit: int | None,
    floor: int = -1,
) -> list[Message]:
    params: dict[str, Any] = {"leaf": leaf_id, "conv": conversation_id, "user": user_id}
    params["limit"] = limit if limit is not None else 1_000_000_000
    params["floor"] = floor
    return [Message(**row) for row in conn.execute(BRANCH, params).mappings()]


def depth_after(conn: Connection, user_id: str, conversation_id: str, parent_id: str | None) -> int:
    """The depth of a new child of ``parent_id`` (0 at the root)."""
    if parent_id is None:
        return 0
    stmt = select(M.depth).where(
        M.id == parent_id, M.conversation_id == conversation_id, M.user_id == user_id
    )
    depth = conn.execute(stmt).scalar_one_or_none()
    if depth is None:
        raise NotFound("parent message not found")
    return int(depth) + 1


def message_values(
    user_id: str,
    conversation_id: str,
    role: str,
    parts: list[Part],
    status: str = "complete",
    model: str | None = None,
) -> dict[str, Any]:
    """A new message's columns, but for where it hangs (``parent_id`` and ``depth``)."""
    now = utcnow()
    return {
        "id": new_id("msg"),
        "conversation_id": conversation_id,
        "user_id": user_id,
        "role": role,
        "parts": parts,
        "text": text_of(parts),
        "status": status,
        "model": model,
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "cost": 0.0,
        "error": None,
        "created_at": now,
        "updated_at": now,
    }


INSERT_MESSAGES = insert(tables.messages)


def insert_messages(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Insert new messages (every column given): one ``executemany``."""
    conn.execute(INSERT_MESSAGES, rows)


class MessageStore(StoreBase):
    async def get_message(
        self, user_id: str, conversation_id: str, message_id: str, *, on_loop: bool = False
    ) -> Message:
        """``on_loop``: read on the loop's own SQLite connection (a turn's reads: one primary
        key lookup costs less than the hop to a thread)."""
        return await self.read(
            lambda conn: message(conn, user_id, conversation_id, message_id), on_loop=on_loop
        )

    async def branch(
        self,
        user_id: str,
        conversation_id: str,
        *,
        leaf_id: str | None,
        limit: int | None = None,
        floor: int = -1,
    ) -> list[Message]:
        """The messages from ``leaf_id`` up to the root, oldest first: at most ``limit``, and
        only those deeper than ``floor``."""
        if leaf_id is None:
            return []
        return await self.read(
            lambda conn: branch_rows(conn, user_id, conversation_id, leaf_id, limit, floor),
            on_loop=True,
        )

    async def ancestor_at(
        self, user_id: str, conversation_id: str, start: str, depth: int, *, limit: int
    ) -> str | None:
        """The id of the message at ``depth`` on the branch through ``start`` (``start``
        itself included), or None when it lies more than ``limit`` messages up."""
        params: dict[str, Any] = {"start": start, "conv": conversation_id, "user": user_id}
        params.update(depth=depth, limit=limit)
        found = await self.read(lambda conn: conn.execute(ANCESTOR, params).scalar())
        return str(found) if found is not None else None

    async def tail_ids(
        self, user_id: str, conversation_id: str, leaf_id: str, depth: int
    ) -> list[str]:
        """The ids of the branch ending at ``leaf_id`` from ``depth`` down, oldest first."""
        return [
            ident for ident, _ in await self.tail_roles(user_id, conversation_id, leaf_id, depth)
        ]

    async def tail_roles(
        self, user_id: str, conversation_id: str, leaf_id: str, depth: int
    ) -> list[tuple[str, str]]:
        """The ids and roles of the branch ending at ``leaf_id`` from ``depth`` down, oldest
        first."""
        params: dict[str, Any] = {"leaf": leaf_id, "conv": conversation_id, "user": user_id}
        params["depth"] = depth
        rows = await self.read(lambda conn: conn.execute(TAIL, params).all(), on_loop=True)
        return [(str(ident), str(role)) for ident, role in rows]

    async def messages_before(
        self,
        user_id: str,
        conversation_id: str,
        *,
        before: str | None,
        limit: int,
        convo: Conversation | None = None,
    ) -> tuple[list[Message], bool]:
        """A page of the active branch ending just before ``before`` (or at the leaf);
        ``convo`` when the caller has already read the conversation."""

        def page(conn: Connection) -> list[Message]:
            leaf = (convo or conversation(conn, user_id, conversation_id)).active_leaf_id
            if before is not None:
                leaf = message(conn, user_id, conversation_id, before).parent_id
            if leaf is None:
                return []
            return branch_rows(conn, user_id, conversation_id, leaf, limit + 1)

        rows = await self.read(page, on_loop=True)
        has_more = len(rows) > limit
        return (rows[1:] if has_more else rows), has_more

    async def children(self, user_id: str, conversation_id: str, parent_id: str) -> list[Message]:
        stmt = (
            select(tables.messages)
            .where(
                M.conversation_id == conversation_id,
                M.user_id == user_id,
                M.parent_id == parent_id,
            )
            .order_by(M.created_at)
        )
        return await self.read(lambda conn: [Message(**r) for r in conn.execute(stmt).mappings()])

    async def sibling_counts(
        self, user_id: str, conversation_id: str, messages: Sequence[Message]
    ) -> dict[str, list[str]]:
        """For each message, the ids of the messages that share its parent (its branches)."""
        parents = [p for p in {m.parent_id for m in messages} if p]
        stmt = (
            select(M.id, M.parent_id)
            .where(
                M.conversation_id == conversation_id,
                M.user_id == user_id,
                or_(M.parent_id.in_(parents), M.parent_id.is_(None)),
            )
            .order_by(M.created_at, M.id)
        )
        rows = await self.read(lambda conn: conn.execute(stmt).all())
        groups: dict[str | None, list[str]] = {}
        for ident, parent in rows:
            groups.setdefault(parent, []).append(ident)
        return {m.id: groups.get(m.parent_id, [m.id]) for m in messages}

    async def set_active_leaf(self, user_id: str, conversation_id: str, message_id: str) -> None:
        """Switch branches: the active leaf becomes the newest descendant of ``message_id``."""
        await self.get_message(user_id, conversation_id, message_id)
        leaf = message_id
        while kids := await self.children(user_id, conversation_id, leaf):
            leaf = kids[-1].id
        await self.write(lambda conn: set_leaf(conn, user_id, conversation_id, leaf))

    async def add_message(
        self,
        user_id: str,
        conversation_id: str,
        *,
        role: str,
        parts: list[Part],
        parent_id: str | None,
        status: str = "complete",
        model: str | None = None,
    ) -> Message:
        """Append one finished message and make it the active leaf."""
        row = message_values(user_id, conversation_id, role, parts, status, model)

        def add(conn: Connection) -> Message:
            if not set_leaf(conn, user_id, conversation_id, row["id"]):
                raise NotFound("conversation not found")
            row.update(
                parent_id=parent_id, depth=depth_after(conn, user_id, conversation_id, parent_id)
            )
            insert_messages(conn, [row])
            return Message(**row)

        return await self.write(add)

    async def fork(self, user_id: str, conversation_id: str, message_id: str) -> Conversation:
        """A new conversation holding copies of the branch up to and including ``message_id``."""

        def copy(conn: Connection) -> Conversation:
            source = conversation(conn, user_id, conversation_id)
            history = branch_rows(conn, user_id, conversation_id, message_id, None)
            if not history:
                raise NotFound("message not found")
            fields = {name: getattr(source, name) for name in CONVERSATION_FIELDS}
            fields["title"] = f"{source.title or 'Conversation'} (fork)"
            fields["metadata"] = {**source.metadata_, "forked_from": source.id}
            copies = _copy_chain(history, "")
            # the fork keeps the summary when it covers part of the copied branch
            covered = [i for i, m in enumerate(history) if m.id == source.summary_message_id]
            if covered:
                fields["summary_message_id"] = copies[covered[0]]["id"]
            elif source.summary_message_id is not None:
                fields["summary"] = None
            convo = new_conversation(conn, user_id, fields)
            for row in copies:
                row["conversation_id"] = convo.id
            insert_messages(conn, copies)
            set_leaf(conn, user_id, convo.id, copies[-1]["id"])
            return conversation(conn, user_id, convo.id)

        await self.ensure_user(user_id)
        return await self.write(copy)


def _copy_chain(history: Sequence[Message], conversation_id: str) -> list[dict[str, Any]]:
    copies: list[dict[str, Any]] = []
    parent: str | None = None
    for depth, original in enumerate(history):
        ident = new_id("msg")
        copies.append(
            {
                "id": ident,
                "conversation_id": conversation_id,
                "user_id": original.user_id,
                "parent_id": parent,
                "depth": depth,
                "role": original.role,
                "parts": original.parts,
                "text": original.text,
                "status": original.status,
                "model": original.model,
                "prompt_tokens": original.prompt_tokens,
                "completion_tokens": original.completion_tokens,
                "cost": original.cost,
                "error": None,
                "created_at": original.created_at,
                "updated_at": original.updated_at,
            }
        )
        parent = ident
    return copies
