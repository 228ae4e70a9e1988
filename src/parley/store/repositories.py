"""Repository functions. Each one that serves a user takes the user id and puts it in the query."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import functools
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import (
    Connection,
    Engine,
    Row,
    Select,
    Table,
    Update,
    and_,
    bindparam,
    delete,
    exists,
    func,
    insert,
    inspect,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import Session, configure_mappers
from sqlalchemy.orm.attributes import instance_dict
from sqlalchemy.orm.instrumentation import manager_of_class

from parley.chat.ids import new_id
from parley.chat.messages import Part, text_of
from parley.chat.usage import TokenUsage
from parley.errors import NotFound, ValidationFailed
from parley.store.db import Busy, InlineSQLite, Prepared, SessionFactory
from parley.store.tables import (
    ApprovalRule,
    Conversation,
    Message,
    PendingInput,
    Run,
    Task,
    ToolCall,
    User,
    utcnow,
)

T = TypeVar("T")

CONVERSATION_FIELDS = ("title", "model", "provider", "temperature", "system", "profile", "summary")
CONVERSATION_STATUSES = ("active", "archived")
LIST_STATUSES = (*CONVERSATION_STATUSES, "all")  # what a list of conversations may filter by

# The statements of a chat request, built once: each keeps its compiled form and cache key,
# and the writes go through Core (no unit of work, no identity map) with user_id in the WHERE.
MESSAGES: Table = Message.__table__  # type: ignore[assignment]
CONVERSATIONS: Table = Conversation.__table__  # type: ignore[assignment]
RUNS: Table = Run.__table__  # type: ignore[assignment]

CONVERSATION_BY_ID = select(Conversation).where(
    Conversation.id == bindparam("b_conversation"), Conversation.user_id == bindparam("b_user")
)
# the conversation as a plain row, made into a (detached) Conversation without an ORM session
CONVERSATION_ROW = Prepared(
    select(CONVERSATIONS).where(
        CONVERSATIONS.c.id == bindparam("b_conversation"),
        CONVERSATIONS.c.user_id == bindparam("b_user"),
    )
)
_CONVERSATION_ATTRIBUTES = {  # column name -> attribute name (``metadata`` -> ``metadata_``)
    column.name: inspect(Conversation).get_property_by_column(column).key
    for column in CONVERSATIONS.columns
}
# the columns begin_turn gives (``_message_values``, ``_link``, its run)
NEW_MESSAGE_KEYS = (
    *("id", "conversation_id", "user_id", "parent_id", "depth", "role", "parts", "text"),
    *("status", "model", "prompt_tokens", "completion_tokens", "cost", "created_at", "updated_at"),
)
NEW_RUN_KEYS = ("id", "user_id", "conversation_id", "user_message_id", "message_id", "model")
INSERT_MESSAGES = Prepared(insert(MESSAGES), keys=NEW_MESSAGE_KEYS)
CREATE_CONVERSATION = insert(CONVERSATIONS).returning(*CONVERSATIONS.columns)
INSERT_RUN = Prepared(insert(RUNS), keys=(*NEW_RUN_KEYS, "status", "owner", "state", "created_at"))
SAVE_REPLY = (
    update(MESSAGES)
    .where(MESSAGES.c.id == bindparam("b_message"), MESSAGES.c.user_id == bindparam("b_user"))
    .values(
        parts=bindparam("new_parts", type_=MESSAGES.c.parts.type),
        text=bindparam("new_text", type_=MESSAGES.c.text.type),
        updated_at=bindparam("now", type_=MESSAGES.c.updated_at.type),
    )
)
FINISH_REPLY = SAVE_REPLY.values(
    status=bindparam("new_status", type_=MESSAGES.c.status.type),
    prompt_tokens=MESSAGES.c.prompt_tokens
    + bindparam("add_prompt", type_=MESSAGES.c.prompt_tokens.type),
    completion_tokens=MESSAGES.c.completion_tokens
    + bindparam("add_completion", type_=MESSAGES.c.completion_tokens.type),
    cost=MESSAGES.c.cost + bindparam("add_cost", type_=MESSAGES.c.cost.type),
    error=bindparam("new_error", type_=MESSAGES.c.error.type),
)
ADD_USAGE = (
    update(CONVERSATIONS)
    .where(
        CONVERSATIONS.c.id == bindparam("b_conversation"),
        CONVERSATIONS.c.user_id == bindparam("b_user"),
    )
    .values(
        prompt_tokens=CONVERSATIONS.c.prompt_tokens
        + bindparam("add_prompt", type_=CONVERSATIONS.c.prompt_tokens.type),
        completion_tokens=CONVERSATIONS.c.completion_tokens
        + bindparam("add_completion", type_=CONVERSATIONS.c.completion_tokens.type),
        cost=CONVERSATIONS.c.cost + bindparam("add_cost", type_=CONVERSATIONS.c.cost.type),
        updated_at=bindparam("now", type_=CONVERSATIONS.c.updated_at.type),
    )
)
_MOVE_LEAF = (
    update(CONVERSATIONS)
    .where(
        CONVERSATIONS.c.id == bindparam("b_conversation"),
        CONVERSATIONS.c.user_id == bindparam("b_user"),
    )
    .values(
        active_leaf_id=bindparam("leaf_id", type_=CONVERSATIONS.c.active_leaf_id.type),
        updated_at=bindparam("now", type_=CONVERSATIONS.c.updated_at.type),
    )
)
MOVE_LEAF = Prepared(_MOVE_LEAF)
# the first message names an untitled conversation
MOVE_LEAF_AND_TITLE = Prepared(
    _MOVE_LEAF.values(
        title=func.coalesce(
            func.nullif(CONVERSATIONS.c.title, ""),
            bindparam("new_title", type_=CONVERSATIONS.c.title.type),
        )
    )
)
RESTREAM_REPLY = (
    update(MESSAGES)
    .where(
        MESSAGES.c.id == bindparam("b_message"),
        MESSAGES.c.conversation_id == bindparam("b_conversation"),
        MESSAGES.c.user_id == bindparam("b_user"),
    )
    .values(status="streaming")
)
MESSAGE_BY_ID = select(Message).where(
    Message.id == bindparam("b_message"),
    Message.conversation_id == bindparam("b_conversation"),
    Message.user_id == bindparam("b_user"),
)
DEPTH_OF = select(MESSAGES.c.depth).where(
    MESSAGES.c.id == bindparam("b_message"),
    MESSAGES.c.conversation_id == bindparam("b_conversation"),
    MESSAGES.c.user_id == bindparam("b_user"),
)
# Walk ``parent_id`` up from the leaf and return the branch's messages, oldest first, in one
# statement (it was the ids, then an ORM query for them). Each step is a primary-key lookup and
# the owner is checked on the way out: with the owner in the step, PostgreSQL on stale statistics
# scanned the whole conversation at every step (240 ms for a page of a 10,000-message
# conversation, 2 to 6 ms after).
BRANCH_ROWS = Prepared(
    text(
        f"""
        WITH RECURSIVE branch(id, parent_id, n) AS (
            SELECT id, parent_id, 1 FROM messages
             WHERE id = :leaf AND conversation_id = :conv AND user_id = :user
            UNION ALL
            SELECT m.id, m.parent_id, b.n + 1
              FROM branch b JOIN messages m ON m.id = b.parent_id
             WHERE b.n < :limit
        )
        SELECT {", ".join(f"messages.{c.name}" for c in MESSAGES.columns)}
          FROM branch JOIN messages ON messages.id = branch.id
         WHERE messages.conversation_id = :conv AND messages.user_id = :user
         ORDER BY branch.n DESC
        """
    ).columns(*MESSAGES.columns)
)
_MESSAGE_ATTRIBUTES = {
    column.name: inspect(Message).get_property_by_column(column).key for column in MESSAGES.columns
}


@functools.cache
def _end_run(*, with_state: bool, finished: bool) -> Update:
    """The run's end: its status, its suspended state when it has one, its finish time."""
    values: dict[str, Any] = {"status": bindparam("new_status", type_=RUNS.c.status.type)}
    if with_state:
        values["state"] = bindparam("new_state", type_=RUNS.c.state.type)
    if finished:
        values["finished_at"] = bindparam("now", type_=RUNS.c.finished_at.type)
    where = RUNS.c.id == bindparam("b_run"), RUNS.c.user_id == bindparam("b_user")
    return update(RUNS).where(*where).values(**values)


def _message_from(row: dict[str, Any]) -> Message:
    """A (detached) Message from a plain row, as the ORM's own loading builds it."""
    return _detached(Message, {_MESSAGE_ATTRIBUTES[k]: v for k, v in row.items()})


def _conversation_from(row: Row[Any] | dict[str, Any]) -> Conversation:
    """A (detached) Conversation from a plain row, without an ORM session's bookkeeping."""
    mapping = row if isinstance(row, dict) else row._mapping
    values = {_CONVERSATION_ATTRIBUTES[k]: v for k, v in mapping.items()}
    return _detached(Conversation, values)


configure_mappers()  # ``_detached`` builds objects before any query would have configured them


def _detached(cls: type[T], values: dict[str, Any]) -> T:
    """An object of a mapped class, in no session, holding ``values`` as they are: a snapshot
    to read, never to add to a session. The ORM's constructor fires an attribute event per
    column (about 20 µs for a message); this is what the ORM's own loading does (1.5 µs)."""
    instance: T = manager_of_class(cls).new_instance()
    instance_dict(instance).update(values)
    return instance


def _orm(conn: Connection) -> Session:
    """An ORM session inside ``conn``'s transaction (it neither commits nor ends it)."""
    return Session(bind=conn, expire_on_commit=False, autoflush=False)


def _depth_after(
    conn: Connection, user_id: str, conversation_id: str, parent_id: str | None
) -> int:
    if parent_id is None:
        return 0
    params = {"b_message": parent_id, "b_conversation": conversation_id, "b_user": user_id}
    depth = conn.execute(DEPTH_OF, params).scalar_one_or_none()
    if depth is None:
        raise NotFound("parent message not found")
    return int(depth) + 1


def _move_leaf(
    conn: Connection, user_id: str, conversation_id: str, leaf_id: str, title: str | None
) -> None:
    """Point the conversation at its new leaf (and name it if it has no title yet)."""
    params: dict[str, Any] = {"b_conversation": conversation_id, "b_user": user_id}
    params.update(leaf_id=leaf_id, now=utcnow())
    if title:
        params["new_title"] = title
    if not (MOVE_LEAF_AND_TITLE if title else MOVE_LEAF).execute(conn, params):
        raise NotFound("conversation not found")


def _restream(conn: Connection, user_id: str, conversation_id: str, message_id: str) -> Message:
    """The existing assistant message a resumed run appends to, streaming again."""
    params = {"b_message": message_id, "b_conversation": conversation_id, "b_user": user_id}
    if not conn.execute(RESTREAM_REPLY, params).rowcount:
        raise NotFound("message not found")
    with _orm(conn) as session:
        return session.execute(MESSAGE_BY_ID, params).scalar_one()


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


class Store:
    """All database access. Methods open their own short transactions."""

    # SQLite's WAL is copied into the database after this many writes on the loop's connection
    WAL_CHECKPOINT_EVERY = 256

    def __init__(self, sessions: SessionFactory) -> None:
        self.sessions = sessions
        self.engine: AsyncEngine = sessions.kw["bind"]
        self._known_users: set[str] = set()
        self.dialect = self.engine.dialect.name
        # SQLite has one writer at a time. Left to its busy handler, many concurrent runs'
        # writers poll for the file lock and some give up ("database is locked"); queued here,
        # they take turns in order and each holds a connection only while it writes.
        self._sqlite_writer = asyncio.Lock() if self.dialect == "sqlite" else None
        url = self.engine.url.render_as_string(hide_password=False)
        self._inline = InlineSQLite(url) if InlineSQLite.usable(url) else None
        self._inline_writes = 0
        self._background: set[asyncio.Task[None]] = set()

    @property
    def sync_engines(self) -> list[Engine]:
        """Every engine the store's statements go through (to listen for them: tests, bench)."""
        engines = [self.engine.sync_engine]
        if self._inline is not None:
            engines.append(self._inline.engine)
        return engines

    async def close(self) -> None:
        for task in list(self._background):
            with contextlib.suppress(Exception):
                await task
        if self._inline is not None:
            self._inline.dispose()
        await self.engine.dispose()

    @contextlib.asynccontextmanager
    async def writing(self) -> AsyncIterator[AsyncSession]:
        """A session inside a write transaction, committed when the block ends."""
        async with self._writer_turn(), self.sessions() as session, session.begin():
            yield session

    def _writer_turn(self) -> contextlib.AbstractAsyncContextManager[Any]:
        return self._sqlite_writer or contextlib.nullcontext()

    async def _read(self, work: Callable[[Connection], T]) -> T:
        """``work(connection)`` in a read transaction: on the loop's own thread for a SQLite
        file (:class:`InlineSQLite`), through the async driver otherwise."""
        if self._inline is not None:
            with contextlib.suppress(Busy):
                return self._inline.read(work)
        async with self.engine.connect() as conn:
            return await conn.run_sync(work)

    async def _write(self, work: Callable[[Connection], T]) -> T:
        """``work(connection)`` in one write transaction, committed when it returns. On SQLite
        it runs on the loop's thread unless another process holds the write lock; then, like
        on every other database, through the async driver, where waiting stops nothing."""
        async with self._writer_turn():
            if self._inline is not None:
                with contextlib.suppress(Busy):
                    result = self._inline.write(work)
                    self._wrote_inline()
                    return result
            async with self.engine.begin() as conn:
                return await conn.run_sync(work)

    def _wrote_inline(self) -> None:
        self._inline_writes += 1
        if self._inline_writes % self.WAL_CHECKPOINT_EVERY == 0:
            task = asyncio.create_task(self.checkpoint_wal())
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def checkpoint_wal(self) -> None:
        """Copy SQLite's WAL into the database, on a worker thread (the loop's own connection
        never does: that copy and its fsync would stop every stream)."""
        async with self.engine.connect() as conn:
            await conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")

    # users -------------------------------------------------------------------------------

    async def ensure_user(self, user_id: str) -> None:
        """Create the user row on the first valid token with a new ``sub``."""
        if user_id in self._known_users:
            return
        insert = pg_insert if self.dialect == "postgresql" else sqlite_insert
        stmt = insert(User).values(id=user_id, created_at=utcnow()).on_conflict_do_nothing()
        await self._write(lambda conn: conn.execute(stmt))
        self._known_users.add(user_id)

    # conversations -----------------------------------------------------------------------

    async def create_conversation(self, user_id: str, **fields: Any) -> Conversation:
        await self.ensure_user(user_id)
        now = utcnow()
        values = {"id": new_id("conv"), "user_id": user_id, "created_at": now, "updated_at": now}
        values.update(fields, metadata=fields.get("metadata") or {})  # the column's name
        # the row as stored, with the columns' own defaults: not a second copy of them here
        row = await self._write(lambda conn: conn.execute(CREATE_CONVERSATION, values).one())
        return _conversation_from(row)

    async def get_conversation(self, user_id: str, conversation_id: str) -> Conversation:
        params = {"b_conversation": conversation_id, "b_user": user_id}
        row = await self._read(lambda conn: CONVERSATION_ROW.first(conn, params))
        if row is None:
            raise NotFound("conversation not found")
        return _conversation_from(row)

    async def _conversation(
        self, session: AsyncSession, user_id: str, conversation_id: str
    ) -> Conversation:
        params = {"b_conversation": conversation_id, "b_user": user_id}
        convo = (await session.execute(CONVERSATION_BY_ID, params)).scalar_one_or_none()
        if convo is None:
            raise NotFound("conversation not found")
        return convo

    async def find_conversation_by_external(
        self, user_id: str, external_id: str
    ) -> Conversation | None:
        stmt = select(Conversation).where(
            Conversation.user_id == user_id, Conversation.external_id == external_id
        )
        async with self.sessions() as session:
            return (await session.execute(stmt)).scalars().first()

    async def list_conversations(
        self,
        user_id: str,
        *,
        limit: int,
        cursor: str | None = None,
        q: str | None = None,
        status: str = "active",
        skip: int = 0,
    ) -> tuple[Sequence[Conversation], str | None]:
        """Newest first, keyset-paginated on ``(updated_at, id)``, and ``skip`` rows after the
        cursor passed over (offset paging); ``status`` is one of :data:`LIST_STATUSES`."""
        if status not in LIST_STATUSES:
            raise ValidationFailed(f"status must be one of {', '.join(LIST_STATUSES)}")
        stmt: Select[Any] = select(Conversation).where(Conversation.user_id == user_id)
        if status != "all":
            stmt = stmt.where(Conversation.status == status)
        if cursor:
            when, ident = decode_cursor(cursor)
            stmt = stmt.where(
                or_(
                    Conversation.updated_at < when,
                    and_(Conversation.updated_at == when, Conversation.id < ident),
                )
            )
        if q:
            stmt = stmt.where(_search_clause(user_id, q))
        stmt = stmt.order_by(Conversation.updated_at.desc(), Conversation.id.desc())
        async with self.sessions() as session:
            rows: Sequence[Conversation] = (
                (await session.execute(stmt.offset(skip).limit(limit + 1))).scalars().all()
            )
        next_cursor = None
        if len(rows) > limit:
            rows = rows[:limit]
            next_cursor = encode_cursor(rows[-1].updated_at, rows[-1].id)
        return rows, next_cursor

    async def update_conversation(
        self, user_id: str, conversation_id: str, fields: dict[str, Any]
    ) -> Conversation:
        if fields.get("status", "active") not in CONVERSATION_STATUSES:
            raise ValidationFailed(f"status must be one of {', '.join(CONVERSATION_STATUSES)}")
        async with self.writing() as session:
            convo = await self._conversation(session, user_id, conversation_id)
            for name, value in fields.items():
                setattr(convo, "metadata_" if name == "metadata" else name, value)
            convo.updated_at = utcnow()
        return convo

    async def delete_conversation(self, user_id: str, conversation_id: str) -> None:
        async with self.writing() as session:
            convo = await self._conversation(session, user_id, conversation_id)
            for table in (Message, ToolCall, PendingInput, Run):
                await session.execute(
                    delete(table).where(table.conversation_id == convo.id, table.user_id == user_id)
                )
            await session.delete(convo)

    # messages ----------------------------------------------------------------------------

    async def get_message(self, user_id: str, conversation_id: str, message_id: str) -> Message:
        params = {"b_message": message_id, "b_conversation": conversation_id, "b_user": user_id}
        async with self.sessions() as session:
            message = (await session.execute(MESSAGE_BY_ID, params)).scalar_one_or_none()
        if message is None:
            raise NotFound("message not found")
        return message

    async def branch(
        self,
        user_id: str,
        conversation_id: str,
        *,
        leaf_id: str | None,
        limit: int | None = None,
    ) -> list[Message]:
        """The messages from ``leaf_id`` up to the root, oldest first (at most ``limit``)."""
        if leaf_id is None:
            return []
        params: dict[str, Any] = {"leaf": leaf_id, "conv": conversation_id, "user": user_id}
        params["limit"] = limit if limit is not None else 1_000_000_000

        def read(conn: Connection) -> list[Message]:
            return [_message_from(row) for row in BRANCH_ROWS.all(conn, params)]

        return await self._read(read)

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
        if convo is None:
            convo = await self.get_conversation(user_id, conversation_id)
        leaf = convo.active_leaf_id
        if before is not None:
            leaf = (await self.get_message(user_id, conversation_id, before)).parent_id
        page = await self.branch(user_id, conversation_id, leaf_id=leaf, limit=limit + 1)
        has_more = len(page) > limit
        return (page[1:] if has_more else page), has_more

    async def children(self, user_id: str, conversation_id: str, parent_id: str) -> list[Message]:
        stmt = (
            select(Message)
            .where(
                Message.conversation_id == conversation_id,
                Message.user_id == user_id,
                Message.parent_id == parent_id,
            )
            .order_by(Message.created_at)
        )
        async with self.sessions() as session:
            return list((await session.execute(stmt)).scalars().all())

    async def sibling_counts(
        self, user_id: str, conversation_id: str, messages: Sequence[Message]
    ) -> dict[str, list[str]]:
        """For each message, the ids of the messages that share its parent (its branches)."""
        parents = {m.parent_id for m in messages}
        stmt = (
            select(Message.id, Message.parent_id)
            .where(
                Message.conversation_id == conversation_id,
                Message.user_id == user_id,
                or_(
                    Message.parent_id.in_([p for p in parents if p]),
                    Message.parent_id.is_(None),
                ),
            )
            .order_by(Message.created_at, Message.id)
        )
        async with self.sessions() as session:
            rows = (await session.execute(stmt)).all()
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
        await self._set_leaf(user_id, conversation_id, leaf)

    async def _set_leaf(self, user_id: str, conversation_id: str, leaf: str | None) -> None:
        stmt = (
            update(Conversation)
            .where(Conversation.id == conversation_id, Conversation.user_id == user_id)
            .values(active_leaf_id=leaf, updated_at=utcnow())
        )
        async with self.writing() as session:
            await session.execute(stmt)

    async def fork(self, user_id: str, conversation_id: str, message_id: str) -> Conversation:
        """A new conversation holding copies of the branch up to and including ``message_id``."""
        source = await self.get_conversation(user_id, conversation_id)
        history = await self.branch(user_id, conversation_id, leaf_id=message_id)
        if not history:
            raise NotFound("message not found")
        title = f"{source.title or 'Conversation'} (fork)"
        fields = {name: getattr(source, name) for name in CONVERSATION_FIELDS}
        fields.update(title=title, metadata={**source.metadata_, "forked_from": source.id})
        convo = await self.create_conversation(user_id, **fields)
        copies = _copy_chain(history, convo.id)
        async with self.writing() as session:
            session.add_all(copies)
            await session.execute(
                update(Conversation)
                .where(Conversation.id == convo.id, Conversation.user_id == user_id)
                .values(active_leaf_id=copies[-1].id)
            )
        convo.active_leaf_id = copies[-1].id
        return convo

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
        async with self.writing() as session:
            convo = await self._conversation(session, user_id, conversation_id)
            conn = await session.connection()
            depth = await conn.run_sync(_depth_after, user_id, conversation_id, parent_id)
            message = _new_message(convo, role, parts, parent_id, depth, status, model)
            session.add(message)
            convo.active_leaf_id = message.id
            convo.updated_at = message.created_at
        return message

    # turns -------------------------------------------------------------------------------

    async def begin_turn(
        self,
        user_id: str,
        conversation_id: str,
        *,
        user_parts: list[Part] | None,
        parent_id: str | None,
        model: str,
        run_id: str,
        title: str | None,
        continue_message_id: str | None = None,
        owner: str | None = None,
        parent_depth: int | None = None,
    ) -> tuple[Message | None, Message]:
        """One commit: the user message (if any), the streaming assistant message and the run.

        With ``continue_message_id`` the run appends to an existing assistant message instead
        (a run resumed after an approval). ``parent_depth``, the depth of ``parent_id`` when the
        caller has just read it, saves looking the parent up again.
        """
        rows: list[dict[str, Any]] = []
        if user_parts is not None:
            rows.append(_message_values(user_id, conversation_id, "user", user_parts))
        if continue_message_id is None:
            rows.append(
                _message_values(user_id, conversation_id, "assistant", [], "streaming", model)
            )
        leaf_id = continue_message_id or rows[-1]["id"]
        run: dict[str, Any] = {
            "id": run_id,
            "user_id": user_id,
            "conversation_id": conversation_id,
            "user_message_id": rows[0]["id"] if user_parts is not None else None,
            "message_id": leaf_id,
            "model": model,
            "status": "running",
            "owner": owner,
            "state": {},
            "created_at": utcnow(),
        }

        def begin(conn: Connection) -> Message:
            _move_leaf(conn, user_id, conversation_id, leaf_id, title)
            if rows:
                if parent_id is not None and parent_depth is not None:
                    depth = parent_depth + 1
                else:
                    depth = _depth_after(conn, user_id, conversation_id, parent_id)
                _link(rows, parent_id, depth)
                INSERT_MESSAGES.execute(conn, rows)
            if continue_message_id is None:
                assistant = _detached(Message, rows[-1])
            else:
                assistant = _restream(conn, user_id, conversation_id, leaf_id)
            INSERT_RUN.execute(conn, run)
            return assistant

        assistant = await self._write(begin)
        user_message = _detached(Message, rows[0]) if user_parts is not None else None
        return user_message, assistant

    async def begin_turn_continue(
        self, user_id: str, conversation_id: str, message_id: str
    ) -> None:
        """A suspended reply streams again: its run resumed after an approval."""
        now = utcnow()
        async with self.writing() as session:
            await session.execute(
                update(Message)
                .where(Message.id == message_id, Message.user_id == user_id)
                .values(status="streaming", updated_at=now)
            )
            await session.execute(
                update(Conversation)
                .where(Conversation.id == conversation_id, Conversation.user_id == user_id)
                .values(active_leaf_id=message_id, updated_at=now)
            )

    async def checkpoint(self, user_id: str, message_id: str, parts: list[Part]) -> None:
        """Save the streaming reply so far (called at most once a second)."""
        await self.checkpoint_many([(user_id, message_id, parts)])

    async def checkpoint_many(self, replies: Sequence[tuple[str, str, list[Part]]]) -> None:
        """Save several streaming replies, each ``(user_id, message_id, parts)``, in one commit."""
        now = utcnow()
        params = [
            {"b_message": message_id, "b_user": user_id, "new_parts": parts}
            | {"new_text": text_of(parts), "now": now}
            for user_id, message_id, parts in replies
        ]
        async with self.writing() as session:
            await (await session.connection()).execute(SAVE_REPLY, params)

    async def finish_turn(
        self,
        user_id: str,
        *,
        run_id: str,
        message_id: str,
        conversation_id: str,
        status: str,
        parts: list[Part],
        usage: TokenUsage,
        cost: float = 0.0,
        error: dict[str, str] | None = None,
        run_status: str | None = None,
        run_state: dict[str, Any] | None = None,
    ) -> None:
        """One commit: the final reply, its usage added to the conversation, the run's end."""
        params: dict[str, Any] = {"b_user": user_id, "b_message": message_id, "b_run": run_id}
        params.update(b_conversation=conversation_id, now=utcnow(), new_error=error)
        params.update(new_parts=parts, new_text=text_of(parts), add_cost=cost)
        params.update(add_prompt=usage.prompt_tokens, add_completion=usage.completion_tokens)
        params.update(new_status=status, new_state=run_state)
        end = _end_run(
            with_state=run_state is not None, finished=(run_status or status) != "awaiting"
        )

        def finish(conn: Connection) -> None:
            conn.execute(FINISH_REPLY, params)
            conn.execute(ADD_USAGE, params)
            conn.execute(end, {**params, "new_status": run_status or status})

        await self._write(finish)

    async def get_run(self, user_id: str, run_id: str) -> Run:
        stmt = select(Run).where(Run.id == run_id, Run.user_id == user_id)
        async with self.sessions() as session:
            run = (await session.execute(stmt)).scalar_one_or_none()
        if run is None:
            raise NotFound("run not found")
        return run

    async def active_run(self, user_id: str, conversation_id: str) -> Run | None:
        stmt = (
            select(Run)
            .where(
                Run.conversation_id == conversation_id,
                Run.user_id == user_id,
                Run.status.in_(("running", "awaiting")),
            )
            .order_by(Run.created_at.desc())
        )
        async with self.sessions() as session:
            return (await session.execute(stmt)).scalars().first()

    async def latest_run(self, user_id: str, conversation_id: str) -> Run | None:
        """The conversation's newest run, whatever its status."""
        stmt = (
            select(Run)
            .where(Run.conversation_id == conversation_id, Run.user_id == user_id)
            .order_by(Run.created_at.desc())
        )
        async with self.sessions() as session:
            return (await session.execute(stmt)).scalars().first()

    async def running_runs(self) -> list[Run]:
        """Every run marked running, across users (for the failover sweep, not for requests)."""
        async with self.sessions() as session:
            stmt = select(Run).where(Run.status == "running")
            return list((await session.execute(stmt)).scalars().all())

    async def note_last_event(self, user_id: str, run_id: str, last_event_id: int) -> None:
        """Remember the id of the run's last event so far (when it stops for a person); it
        only ever grows."""
        async with self.writing() as session:
            await session.execute(
                update(Run)
                .where(Run.id == run_id, Run.user_id == user_id)
                .where(Run.last_event_id < last_event_id)
                .values(last_event_id=last_event_id)
            )

    async def interrupt_run(self, run: Run) -> bool:
        """Mark a run whose process died, and its streaming reply, ``interrupted`` (once)."""
        now = utcnow()
        owner_matches = Run.owner.is_(None) if run.owner is None else Run.owner == run.owner
        async with self.writing() as session:
            result = await session.execute(
                update(Run)
                .where(Run.id == run.id, Run.status == "running", owner_matches)
                .values(status="interrupted", finished_at=now)
            )
            if not getattr(result, "rowcount", 0):
                return False
            await session.execute(
                update(Message)
                .where(
                    Message.id == run.message_id,
                    Message.user_id == run.user_id,
                    Message.status == "streaming",
                )
                .values(status="interrupted", updated_at=now)
            )
        return True

    # tool calls (the audit log) ----------------------------------------------------------

    async def record_tool_call(self, call: ToolCall) -> None:
        async with self.writing() as session:
            session.add(call)

    async def update_tool_call(self, user_id: str, call_id: str, **values: Any) -> None:
        async with self.writing() as session:
            await session.execute(
                update(ToolCall)
                .where(ToolCall.id == call_id, ToolCall.user_id == user_id)
                .values(**values)
            )

    async def list_tool_calls(self, user_id: str, conversation_id: str) -> list[ToolCall]:
        await self.get_conversation(user_id, conversation_id)
        stmt = (
            select(ToolCall)
            .where(ToolCall.conversation_id == conversation_id, ToolCall.user_id == user_id)
            .order_by(ToolCall.created_at, ToolCall.id)
        )
        async with self.sessions() as session:
            return list((await session.execute(stmt)).scalars().all())

    async def side_effects_after(
        self, user_id: str, conversation_id: str, message_ids: Sequence[str]
    ) -> list[ToolCall]:
        """Tool calls with side effects made by the given messages (newest branch tail)."""
        if not message_ids:
            return []
        stmt = (
            select(ToolCall)
            .where(
                ToolCall.conversation_id == conversation_id,
                ToolCall.user_id == user_id,
                ToolCall.message_id.in_(list(message_ids)),
                ToolCall.read_only.is_(False),
                ToolCall.status == "succeeded",
            )
            .order_by(ToolCall.created_at)
        )
        async with self.sessions() as session:
            return list((await session.execute(stmt)).scalars().all())

    # pending approvals and elicitations --------------------------------------------------

    async def add_pending(self, pending: PendingInput) -> None:
        async with self.writing() as session:
            session.add(pending)

    async def get_pending(self, user_id: str, run_id: str, kind: str, key: str) -> PendingInput:
        column = PendingInput.tool_call_id if kind == "approval" else PendingInput.id
        stmt = select(PendingInput).where(
            PendingInput.run_id == run_id,
            PendingInput.user_id == user_id,
            PendingInput.kind == kind,
            column == key,
        )
        async with self.sessions() as session:
            pending = (await session.execute(stmt)).scalars().first()
        if pending is None:
            raise NotFound(f"{kind} not found")
        return pending

    async def answer_pending(
        self, user_id: str, pending_id: str, status: str, answer: dict[str, Any]
    ) -> bool:
        """Record the answer once: False when it was already answered (the caller's 409)."""
        stmt = (
            update(PendingInput)
            .where(
                PendingInput.id == pending_id,
                PendingInput.user_id == user_id,
                PendingInput.status == "pending",
            )
            .values(status=status, answer=answer, answered_at=utcnow())
        )
        async with self.writing() as session:
            result = await session.execute(stmt)
        return bool(getattr(result, "rowcount", 0))

    async def pending_for_run(self, user_id: str, run_id: str) -> list[PendingInput]:
        stmt = (
            select(PendingInput)
            .where(PendingInput.run_id == run_id, PendingInput.user_id == user_id)
            .order_by(PendingInput.created_at)
        )
        async with self.sessions() as session:
            return list((await session.execute(stmt)).scalars().all())

    async def pending_in_conversation(
        self, user_id: str, conversation_id: str
    ) -> list[PendingInput]:
        stmt = (
            select(PendingInput)
            .where(
                PendingInput.conversation_id == conversation_id,
                PendingInput.user_id == user_id,
                PendingInput.status == "pending",
            )
            .order_by(PendingInput.created_at)
        )
        async with self.sessions() as session:
            return list((await session.execute(stmt)).scalars().all())

    async def set_run(self, user_id: str, run_id: str, **values: Any) -> None:
        async with self.writing() as session:
            await session.execute(
                update(Run).where(Run.id == run_id, Run.user_id == user_id).values(**values)
            )

    # approval rules ----------------------------------------------------------------------

    async def add_rule(self, user_id: str, scope: str, name: str) -> ApprovalRule:
        rule = ApprovalRule(id=new_id("rule"), user_id=user_id, scope=scope, name=name)
        async with self.writing() as session:
            session.add(rule)
        return rule

    async def list_rules(self, user_id: str) -> list[ApprovalRule]:
        stmt = (
            select(ApprovalRule)
            .where(ApprovalRule.user_id == user_id)
            .order_by(ApprovalRule.created_at)
        )
        async with self.sessions() as session:
            return list((await session.execute(stmt)).scalars().all())

    async def delete_rule(self, user_id: str, rule_id: str) -> None:
        stmt = delete(ApprovalRule).where(
            ApprovalRule.id == rule_id, ApprovalRule.user_id == user_id
        )
        async with self.writing() as session:
            result = await session.execute(stmt)
        if not getattr(result, "rowcount", 0):
            raise NotFound("approval rule not found")

    # tasks (the built-in todo tools) -----------------------------------------------------

    async def add_task(self, user_id: str, title: str, description: str | None) -> Task:
        await self.ensure_user(user_id)
        task = Task(user_id=user_id, title=title, description=description)
        async with self.writing() as session:
            session.add(task)
        return task

    async def list_tasks(self, user_id: str, completed: bool | None = None) -> list[Task]:
        stmt = select(Task).where(Task.user_id == user_id)
        if completed is not None:
            stmt = stmt.where(Task.completed.is_(completed))
        async with self.sessions() as session:
            return list((await session.execute(stmt.order_by(Task.id))).scalars().all())

    async def get_task(self, user_id: str, task_id: int) -> Task:
        stmt = select(Task).where(Task.id == task_id, Task.user_id == user_id)
        async with self.sessions() as session:
            task = (await session.execute(stmt)).scalar_one_or_none()
        if task is None:
            raise NotFound(f"task {task_id} not found")
        return task

    async def update_task(self, user_id: str, task_id: int, **values: Any) -> Task:
        async with self.writing() as session:
            stmt = select(Task).where(Task.id == task_id, Task.user_id == user_id)
            task = (await session.execute(stmt)).scalar_one_or_none()
            if task is None:
                raise NotFound(f"task {task_id} not found")
            for name, value in values.items():
                setattr(task, name, value)
            task.updated_at = utcnow()
        return task

    async def delete_task(self, user_id: str, task_id: int) -> None:
        stmt = delete(Task).where(Task.id == task_id, Task.user_id == user_id)
        async with self.writing() as session:
            result = await session.execute(stmt)
        if not getattr(result, "rowcount", 0):
            raise NotFound(f"task {task_id} not found")


def _search_clause(user_id: str, q: str) -> Any:
    pattern = q.lower()
    in_text = exists().where(
        Message.conversation_id == Conversation.id,
        Message.user_id == user_id,
        func.lower(Message.text).contains(pattern, autoescape=True),
    )
    return or_(func.lower(Conversation.title).contains(pattern, autoescape=True), in_text)


def _new_message(
    convo: Conversation,
    role: str,
    parts: list[Part],
    parent_id: str | None,
    depth: int,
    status: str = "complete",
    model: str | None = None,
) -> Message:
    values = _message_values(convo.user_id, convo.id, role, parts, status, model)
    return Message(**values, parent_id=parent_id, depth=depth)


def _message_values(
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
        "created_at": now,
        "updated_at": now,
    }


def _link(rows: list[dict[str, Any]], parent_id: str | None, depth: int) -> None:
    """Each new message hangs under the one before it, the first under ``parent_id``."""
    for row in rows:
        row.update(parent_id=parent_id, depth=depth)
        parent_id, depth = row["id"], depth + 1


def _copy_chain(history: Sequence[Message], conversation_id: str) -> list[Message]:
    copies: list[Message] = []
    parent: str | None = None
    for depth, original in enumerate(history):
        copy = Message(
            id=new_id("msg"),
            conversation_id=conversation_id,
            user_id=original.user_id,
            parent_id=parent,
            depth=depth,
            role=original.role,
            parts=original.parts,
            text=original.text,
            status=original.status,
            model=original.model,
            prompt_tokens=original.prompt_tokens,
            completion_tokens=original.completion_tokens,
            cost=original.cost,
            created_at=original.created_at,
            updated_at=original.updated_at,
        )
        copies.append(copy)
        parent = copy.id
    return copies
