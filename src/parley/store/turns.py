"""A turn's writes: its start (messages and run in one commit), checkpoints, its end.

DESIGN.md section 5: the user message is committed before the model is called, the streaming
reply is saved at most once a second, and the reply, its usage and the run's end are one commit.
Every statement takes the user id and puts it in its WHERE clause.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Update, bindparam, func, insert, select, update

from parley.chat.messages import Part, text_of
from parley.chat.usage import TokenUsage
from parley.errors import ErrorInfo, NotFound
from parley.store import tables
from parley.store.base import StoreBase
from parley.store.messages import depth_after, insert_messages, message_values
from parley.store.values import Message, RunState, utcnow

M = tables.messages.c
C = tables.conversations.c
R = tables.runs.c
SAVE_REPLIES = (
    update(tables.messages)
    .where(M.id == bindparam("b_message"), M.user_id == bindparam("b_user"))
    .values(
        parts=bindparam("new_parts", type_=M.parts.type),
        text=bindparam("new_text", type_=M.text.type),
        updated_at=bindparam("now", type_=M.updated_at.type),
    )
)


# The statements of every turn, built once with bound parameters: building and keying a
# statement per call cost more than SQLite's work.
_OWNED_CONVERSATION = (C.id == bindparam("b_conversation"), C.user_id == bindparam("b_user"))
MOVE_LEAF = (
    update(tables.conversations)
    .where(*_OWNED_CONVERSATION)
    .values(
        active_leaf_id=bindparam("leaf_id", type_=C.active_leaf_id.type),
        updated_at=bindparam("now", type_=C.updated_at.type),
    )
)
# the first message names an untitled conversation
MOVE_LEAF_AND_TITLE = MOVE_LEAF.values(
    title=func.coalesce(func.nullif(C.title, ""), bindparam("new_title", type_=C.title.type))
)
INSERT_RUN = insert(tables.runs)
FINISH_REPLY = SAVE_REPLIES.values(
    status=bindparam("new_status", type_=M.status.type),
    prompt_tokens=M.prompt_tokens + bindparam("add_prompt", type_=M.prompt_tokens.type),
    completion_tokens=M.completion_tokens
    + bindparam("add_completion", type_=M.completion_tokens.type),
    cost=M.cost + bindparam("add_cost", type_=M.cost.type),
    error=bindparam("new_error", type_=M.error.type),
)
# a summary's or title's usage: the list's order stays
ADD_ASIDE_USAGE = (
    update(tables.conversations)
    .where(*_OWNED_CONVERSATION)
    .values(
        prompt_tokens=C.prompt_tokens + bindparam("add_prompt", type_=C.prompt_tokens.type),
        completion_tokens=C.completion_tokens
        + bindparam("add_completion", type_=C.completion_tokens.type),
        cost=C.cost + bindparam("add_cost", type_=C.cost.type),
    )
)
ADD_USAGE = ADD_ASIDE_USAGE.values(updated_at=bindparam("now", type_=C.updated_at.type))


@functools.cache
def _end_run(*, with_state: bool, finished: bool) -> Update:
    """The run's end: its status, its suspended state when it has one, its finish time."""
    values: dict[str, Any] = {"status": bindparam("run_status", type_=R.status.type)}
    if with_state:
        values["state"] = bindparam("new_state", type_=R.state.type)
    if finished:
        values["finished_at"] = bindparam("now", type_=R.finished_at.type)
    where = R.id == bindparam("b_run"), R.user_id == bindparam("b_user")
    return update(tables.runs).where(*where).values(**values)


def _move_leaf(
    conn: Connection, user_id: str, conversation_id: str, leaf_id: str, title: str | None
) -> None:
    """Point the conversation at its new leaf (and name it if it has no title yet)."""
    params: dict[str, Any] = {"b_conversation": conversation_id, "b_user": user_id}
    params["leaf_id"] = leaf_id
    params["now"] = utcnow()
    if title:
        params["new_title"] = title
    if not conn.execute(MOVE_LEAF_AND_TITLE if title else MOVE_LEAF, params).rowcount:
        raise NotFound("conversation not found")


def _restream(conn: Connection, user_id: str, conversation_id: str, message_id: str) -> Message:
    """The existing assistant message a resumed run appends to, streaming again."""
    owned = (M.id == message_id, M.conversation_id == conversation_id, M.user_id == user_id)
    if not conn.execute(update(tables.messages).where(*owned).values(status="streaming")).rowcount:
        raise NotFound("message not found")
    return Message(**conn.execute(select(tables.messages).where(*owned)).mappings().one())


def _link(rows: list[dict[str, Any]], parent_id: str | None, depth: int) -> None:
    """Each new message hangs under the one before it, the first under ``parent_id``."""
    for row in rows:
        row.update(parent_id=parent_id, depth=depth)
        parent_id, depth = row["id"], depth + 1


class TurnStore(StoreBase):
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
            rows.append(message_values(user_id, conversation_id, "user", user_parts))
        if continue_message_id is None:
            rows.append(
                message_values(user_id, conversation_id, "assistant", [], "streaming", model)
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
                    depth = depth_after(conn, user_id, conversation_id, parent_id)
                _link(rows, parent_id, depth)
                insert_messages(conn, rows)
            if continue_message_id is None:
                assistant = Message(**rows[-1])
            else:
                assistant = _restream(conn, user_id, conversation_id, leaf_id)
            conn.execute(INSERT_RUN, run)
            return assistant

        assistant = await self.write(begin, on_loop=True)
        user_message = Message(**rows[0]) if user_parts is not None else None
        return user_message, assistant

    async def begin_turn_continue(
        self, user_id: str, conversation_id: str, message_id: str
    ) -> None:
        """A suspended reply streams again: its run resumed after an approval."""
        now = utcnow()

        def restart(conn: Connection) -> None:
            conn.execute(
                update(tables.messages)
                .where(M.id == message_id, M.user_id == user_id)
                .values(status="streaming", updated_at=now)
            )
            conn.execute(
                update(tables.conversations)
                .where(C.id == conversation_id, C.user_id == user_id)
                .values(active_leaf_id=message_id, updated_at=now)
            )

        await self.write(restart)

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
        await self.write(lambda conn: conn.execute(SAVE_REPLIES, params))  # one executemany

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
        error: ErrorInfo | None = None,
        run_status: str | None = None,
        run_state: RunState | None = None,
    ) -> None:
        """One commit: the final reply, its usage added to the conversation, the run's end."""
        params: dict[str, Any] = {"b_user": user_id, "b_message": message_id, "b_run": run_id}
        params.update(b_conversation=conversation_id, now=utcnow(), new_error=error)
        params.update(new_parts=parts, new_text=text_of(parts), add_cost=cost)
        params.update(add_prompt=usage.prompt_tokens, add_completion=usage.completion_tokens)
        params.update(new_status=status, run_status=run_status or status)
        if run_state is not None:
            params["new_state"] = run_state.model_dump()
        end = _end_run(
            with_state=run_state is not None, finished=params["run_status"] != "awaiting"
        )

        def finish(conn: Connection) -> None:
            conn.execute(FINISH_REPLY, params)
            conn.execute(ADD_USAGE, params)
            conn.execute(end, params)

        await self.write(finish, on_loop=True)

    async def add_usage(
        self, user_id: str, conversation_id: str, usage: TokenUsage, cost: float
    ) -> None:
        """Add the usage of a summary or title the model wrote to the conversation's."""
        params: dict[str, Any] = {"b_user": user_id, "b_conversation": conversation_id}
        params.update(add_prompt=usage.prompt_tokens, add_completion=usage.completion_tokens)
        params["add_cost"] = cost
        await self.write(lambda conn: conn.execute(ADD_ASIDE_USAGE, params))
