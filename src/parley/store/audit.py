"""The audit log (one row per tool call the model asked for) and remembered approvals.

Every statement takes the user id and puts it in its WHERE clause.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Select, delete, insert, select, update

from parley.chat.ids import new_id
from parley.errors import NotFound
from parley.store import tables
from parley.store.base import StoreBase
from parley.store.conversations import conversation
from parley.store.values import KEEP, ApprovalRule, Keep, ToolCall, given, utcnow

T = tables.tool_calls.c
A = tables.approval_rules.c


def _calls(conn: Connection, stmt: Select[Any]) -> list[ToolCall]:
    return [ToolCall(**row) for row in conn.execute(stmt).mappings()]


class AuditStore(StoreBase):
    async def record_tool_call(self, call: ToolCall) -> None:
        await self.write(lambda conn: conn.execute(insert(tables.tool_calls), asdict(call)))

    async def update_tool_call(
        self,
        user_id: str,
        call_id: str,
        *,
        status: str,
        approved_by: str | Keep | None = KEEP,
        error: str | Keep | None = KEEP,
        result: Any | Keep = KEEP,
        started_at: datetime | Keep = KEEP,
        finished_at: datetime | Keep = KEEP,
    ) -> None:
        """Move an audit row to ``status``, with the given columns of that step."""
        values = given(
            approved_by=approved_by,
            error=error,
            result=result,
            started_at=started_at,
            finished_at=finished_at,
        )
        stmt = (
            update(tables.tool_calls)
            .where(T.id == call_id, T.user_id == user_id)
            .values(status=status, **values)
        )
        await self._changed(stmt)

    async def move_run_tool_calls(self, user_id: str, run_id: str, message_id: str) -> None:
        """File the audit rows of ``run_id`` under ``message_id`` (a subagent's calls go under
        its parent's message, so their side effects count there)."""
        stmt = (
            update(tables.tool_calls)
            .where(T.run_id == run_id, T.user_id == user_id)
            .values(message_id=message_id)
        )
        await self._changed(stmt)

    async def list_tool_calls(self, user_id: str, conversation_id: str) -> list[ToolCall]:
        stmt = (
            select(tables.tool_calls)
            .where(T.conversation_id == conversation_id, T.user_id == user_id)
            .order_by(T.created_at, T.id)
        )

        def read(conn: Connection) -> list[ToolCall]:
            conversation(conn, user_id, conversation_id)  # NotFound for another user's
            return _calls(conn, stmt)

        return await self.read(read)

    async def side_effects_after(
        self, user_id: str, conversation_id: str, message_ids: Sequence[str]
    ) -> list[ToolCall]:
        """Tool calls with side effects made by the given messages (newest branch tail)."""
        if not message_ids:
            return []
        stmt = (
            select(tables.tool_calls)
            .where(
                T.conversation_id == conversation_id,
                T.user_id == user_id,
                T.message_id.in_(list(message_ids)),
                T.read_only.is_(False),
                T.status == "succeeded",
            )
            .order_by(T.created_at)
        )
        return await self.read(lambda conn: _calls(conn, stmt))

    # approval rules ----------------------------------------------------------------------

    async def add_rule(self, user_id: str, scope: str, name: str) -> ApprovalRule:
        rule = ApprovalRule(
            id=new_id("rule"), user_id=user_id, scope=scope, name=name, created_at=utcnow()
        )
        await self.write(lambda conn: conn.execute(insert(tables.approval_rules), asdict(rule)))
        return rule

    async def list_rules(self, user_id: str) -> list[ApprovalRule]:
        stmt = select(tables.approval_rules).where(A.user_id == user_id).order_by(A.created_at)
        return await self.read(
            lambda conn: [ApprovalRule(**row) for row in conn.execute(stmt).mappings()]
        )

    async def delete_rule(self, user_id: str, rule_id: str) -> None:
        stmt = delete(tables.approval_rules).where(A.id == rule_id, A.user_id == user_id)
        if not await self._changed(stmt):
            raise NotFound("approval rule not found")
