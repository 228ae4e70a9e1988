"""Conversations: create, read, list (keyset pages, search), update, delete, fork.

Every statement takes the user id and puts it in its WHERE clause.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    Select,
    and_,
    bindparam,
    case,
    delete,
    exists,
    func,
    insert,
    or_,
    select,
    tuple_,
    update,
)

from parley.chat.ids import new_id
from parley.errors import NotFound, ValidationFailed
from parley.store import tables
from parley.store.base import StoreBase
from parley.store.values import Conversation, utcnow

CONVERSATION_FIELDS = (
    *("title", "model", "provider", "temperature", "system", "profile", "summary"),
    "project_id",  # a fork of a project's conversation stays in the project
)
CONVERSATION_STATUSES = ("active", "archived")
LIST_STATUSES = (*CONVERSATION_STATUSES, "all")  # what a list of conversations may filter by
SNIPPET_CHARS = 160  # a search result's excerpt of the message that matched, at most
SNIPPET_BEFORE = 50  # of it before the match
C = tables.conversations.c
OWNED = (  # every table of a conversation's, deleted with it
    tables.messages,
    tables.tool_calls,
    tables.pending_inputs,
    tables.runs,
)


CONVERSATION_BY_ID = select(tables.conversations).where(
    C.id == bindparam("b_conversation"), C.user_id == bindparam("b_user")
)


def conversation(conn: Connection, user_id: str, conversation_id: str) -> Conversation:
    """The user's conversation, or :class:`NotFound`."""
    params = {"b_conversation": conversation_id, "b_user": user_id}
    row = conn.execute(CONVERSATION_BY_ID, params).mappings().first()
    if row is None:
        raise NotFound("conversation not found")
    return Conversation.from_row(row)


def new_conversation(conn: Connection, user_id: str, fields: dict[str, Any]) -> Conversation:
    now = utcnow()
    values = {"id": new_id("conv"), "user_id": user_id, "created_at": now, "updated_at": now}
    values.update(fields, metadata=fields.get("metadata") or {})  # the column's name
    # the row as stored, with the columns' own defaults: not a second copy of them here
    stmt = insert(tables.conversations).returning(*tables.conversations.columns)
    return Conversation.from_row(conn.execute(stmt, values).mappings().one())


def set_leaf(conn: Connection, user_id: str, conversation_id: str, leaf: str | None) -> int:
    stmt = (
        update(tables.conversations)
        .where(C.id == conversation_id, C.user_id == user_id)
        .values(active_leaf_id=leaf, updated_at=utcnow())
    )
    return int(conn.execute(stmt).rowcount)


def encode_cursor(when: datetime, ident: str) -> str:
    raw = f"{when.isoformat()}|{ident}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        when, ident = raw.split("|", 1)
        moment = datetime.fromisoformat(when)
        if moment.tzinfo is None or not ident.isprintable() or len(ident) > 40:
            raise ValueError("not a cursor this server writes")
        return moment, ident
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise ValidationFailed("cursor is not one this server gave out") from exc


def _search_clause(q: str) -> Any:
    pattern = q.lower()
    m = tables.messages.c
    in_text = exists().where(
        m.conversation_id == C.id,
        m.user_id == C.user_id,
        func.lower(m.text).contains(pattern, autoescape=True),
    )
    return or_(func.lower(C.title).contains(pattern, autoescape=True), in_text)


def _snippet(text: str, start: int, length: int) -> str:
    """An excerpt cut from ``start`` (1-based) of a text of ``length``, on one line, with an
    ellipsis where it was cut."""
    line = " ".join(text.split())
    head = "…" if start > 1 else ""
    tail = "…" if start - 1 + SNIPPET_CHARS < length else ""
    return f"{head}{line}{tail}"


def paged(
    stmt: Select[Any],
    limit: int,
    cursor: str | None,
    q: str | None,
    status: str,
    skip: int,
    oldest_first: bool,
) -> Select[Any]:
    """One page of the conversations ``stmt`` selects (already scoped to who may see them)."""
    if status not in LIST_STATUSES:
        raise ValidationFailed(f"status must be one of {', '.join(LIST_STATUSES)}")
    if status != "all":
        stmt = stmt.where(C.status == status)
    if cursor:
        when, ident = decode_cursor(cursor)
        if oldest_first:
            after = or_(C.updated_at > when, and_(C.updated_at == when, C.id > ident))
        else:
            after = or_(C.updated_at < when, and_(C.updated_at == when, C.id < ident))
        stmt = stmt.where(after)
    if q:
        stmt = stmt.where(_search_clause(q))
    order = (C.updated_at, C.id) if oldest_first else (C.updated_at.desc(), C.id.desc())
    return stmt.order_by(*order).offset(skip).limit(limit + 1)


def conversations_in(
    conn: Connection, stmt: Select[Any], params: dict[str, Any] | None = None
) -> list[Conversation]:
    return [Conversation.from_row(row) for row in conn.execute(stmt, params).mappings()]


def page_of(rows: list[Conversation], limit: int) -> tuple[Sequence[Conversation], str | None]:
    """The page and the cursor of the next one (None: this is the last)."""
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, encode_cursor(rows[-1].updated_at, rows[-1].id)


class ConversationStore(StoreBase):
    async def create_conversation(self, user_id: str, **fields: Any) -> Conversation:
        await self.ensure_user(user_id)
        return await self.write(lambda conn: new_conversation(conn, user_id, fields), on_loop=True)

    async def get_conversation(self, user_id: str, conversation_id: str) -> Conversation:
        return await self.read(
            lambda conn: conversation(conn, user_id, conversation_id), on_loop=True
        )

    async def find_conversation_by_external(
        self, user_id: str, external_id: str
    ) -> Conversation | None:
        stmt = select(tables.conversations).where(
            C.user_id == user_id, C.external_id == external_id, C.project_id.is_(None)
        )

        def find(conn: Connection) -> Conversation | None:
            row = conn.execute(stmt).mappings().first()
            return None if row is None else Conversation.from_row(row)

        return await self.read(find)

    async def list_conversations(
        self,
        user_id: str,
        *,
        limit: int,
        cursor: str | None = None,
        q: str | None = None,
        status: str = "active",
        skip: int = 0,
        oldest_first: bool = False,
    ) -> tuple[Sequence[Conversation], str | None]:
        """The user's own conversations (a project's are listed by project): newest first (or
        ``oldest_first``), keyset-paginated on ``(updated_at, id)``, and ``skip`` rows after
        the cursor passed over (offset paging); ``status`` is one of :data:`LIST_STATUSES`."""
        own = select(tables.conversations).where(C.user_id == user_id, C.project_id.is_(None))
        stmt = paged(own, limit, cursor, q, status, skip, oldest_first)
        return page_of(await self.read(lambda conn: conversations_in(conn, stmt)), limit)

    async def search_matches(
        self, conversations: Sequence[Conversation], q: str
    ) -> dict[str, dict[str, str]]:
        """For each of these conversations (a page a list gave the caller) whose messages
        contain ``q`` (as the search does: any case, literally), the newest such message:
        ``{message_id, role, snippet}``, the snippet an excerpt of at most
        :data:`SNIPPET_CHARS` around the match, cut in the database (a long message is never
        read whole). Messages are read by conversation and owner, in the query."""
        if not conversations or not q:
            return {}
        owned = [(c.id, c.user_id) for c in conversations]
        m = tables.messages.c
        locate = func.strpos if self.dialect == "postgresql" else func.instr
        at = locate(func.lower(m.text), q.lower())
        start = case((at > SNIPPET_BEFORE, at - SNIPPET_BEFORE), else_=1)
        newest = func.row_number().over(
            partition_by=m.conversation_id, order_by=(m.created_at.desc(), m.id.desc())
        )
        ranked = (
            select(
                m.conversation_id,
                m.id,
                m.role,
                start.label("start"),
                func.length(m.text).label("length"),
                func.substr(m.text, start, SNIPPET_CHARS).label("excerpt"),
                newest.label("rank"),
            )
            .where(tuple_(m.conversation_id, m.user_id).in_(owned), at > 0)
            .subquery()
        )
        stmt = select(ranked).where(ranked.c.rank == 1)

        def matches(conn: Connection) -> dict[str, dict[str, str]]:
            return {
                row.conversation_id: {
                    "message_id": row.id,
                    "role": row.role,
                    "snippet": _snippet(row.excerpt, row.start, row.length),
                }
                for row in conn.execute(stmt)
            }

        return await self.read(matches)

    async def update_conversation(
        self, user_id: str, conversation_id: str, fields: dict[str, Any]
    ) -> Conversation:
        if fields.get("status", "active") not in CONVERSATION_STATUSES:
            raise ValidationFailed(f"status must be one of {', '.join(CONVERSATION_STATUSES)}")
        values = {**fields, "updated_at": utcnow()}  # ``metadata`` is the column's own name
        stmt = (
            update(tables.conversations)
            .where(C.id == conversation_id, C.user_id == user_id)
            .values(**values)
            .returning(*tables.conversations.columns)
        )

        def change(conn: Connection) -> Conversation:
            row = conn.execute(stmt).mappings().first()
            if row is None:
                raise NotFound("conversation not found")
            return Conversation.from_row(row)

        return await self.write(change)

    async def set_summary(
        self,
        user_id: str,
        conversation_id: str,
        summary: str,
        *,
        through: str,
        expected: str | None,
    ) -> bool:
        """Store a summary covering the branch up to ``through``, unless the summary changed
        since it was read (its message is no longer ``expected``); the list's order stays."""
        covered = C.summary_message_id
        same = covered.is_(None) if expected is None else covered == expected
        stmt = (
            update(tables.conversations)
            .where(C.id == conversation_id, C.user_id == user_id, same)
            .values(summary=summary, summary_message_id=through)
        )
        return bool(await self.write(lambda conn: conn.execute(stmt).rowcount))

    async def replace_title(
        self, user_id: str, conversation_id: str, title: str, *, expected: str
    ) -> bool:
        """Rename the conversation unless its title is no longer ``expected`` (a person
        renamed it meanwhile)."""
        stmt = (
            update(tables.conversations)
            .where(C.id == conversation_id, C.user_id == user_id, C.title == expected)
            .values(title=title)
        )
        return bool(await self.write(lambda conn: conn.execute(stmt).rowcount))

    async def delete_conversation(self, user_id: str, conversation_id: str) -> None:
        def remove(conn: Connection) -> None:
            conversation(conn, user_id, conversation_id)
            for table in OWNED:
                c = table.c
                conn.execute(
                    delete(table).where(c.conversation_id == conversation_id, c.user_id == user_id)
                )
            conn.execute(
                delete(tables.conversations).where(C.id == conversation_id, C.user_id == user_id)
            )

        await self.write(remove)
