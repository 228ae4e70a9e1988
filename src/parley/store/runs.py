"""Runs and the approvals and questions they wait on (``pending_inputs``).

A suspended run (``awaiting``) is claimed out of it exactly once, whichever process asks. Every
statement a request can reach takes the user id and puts it in its WHERE clause; the start-up
sweeps (``running_runs``, ``awaiting_runs``) read across users and serve no request.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from sqlalchemy import Connection, Select, insert, select, update

from parley.errors import NotFound
from parley.store import tables
from parley.store.base import StoreBase
from parley.store.values import (
    KEEP,
    ApprovalAsk,
    ElicitationAsk,
    Keep,
    PendingInput,
    Run,
    RunState,
    given,
    utcnow,
)

R = tables.runs.c
P = tables.pending_inputs.c
M = tables.messages.c


class RunStore(StoreBase):
    async def get_run(self, user_id: str, run_id: str) -> Run:
        stmt = select(tables.runs).where(R.id == run_id, R.user_id == user_id)
        run = await self.read(lambda conn: _first_run(conn, stmt))
        if run is None:
            raise NotFound("run not found")
        return run

    async def active_run(self, user_id: str, conversation_id: str) -> Run | None:
        stmt = (
            select(tables.runs)
            .where(
                R.conversation_id == conversation_id,
                R.user_id == user_id,
                R.status.in_(("running", "awaiting")),
            )
            .order_by(R.created_at.desc())
        )
        return await self.read(lambda conn: _first_run(conn, stmt))

    async def latest_run(self, user_id: str, conversation_id: str) -> Run | None:
        """The conversation's newest run, whatever its status."""
        stmt = (
            select(tables.runs)
            .where(R.conversation_id == conversation_id, R.user_id == user_id)
            .order_by(R.created_at.desc())
        )
        return await self.read(lambda conn: _first_run(conn, stmt))

    async def running_runs(self) -> list[Run]:
        """Every run marked running, across users (for the failover sweep, not for requests)."""
        stmt = select(tables.runs).where(R.status == "running")
        return await self.read(
            lambda conn: [Run.from_row(r) for r in conn.execute(stmt).mappings()]
        )

    async def awaiting_runs(self) -> list[tuple[str, str]]:
        """``(run_id, user_id)`` of every run waiting for a person, across users (for
        re-arming their timers at start-up, not for requests)."""
        stmt = select(R.id, R.user_id).where(R.status == "awaiting")
        rows = await self.read(lambda conn: conn.execute(stmt).all())
        return [(run_id, user_id) for run_id, user_id in rows]

    async def claim_run(self, user_id: str, run_id: str, *, to: str, owner: str) -> bool:
        """Move a suspended run out of ``awaiting`` to ``to``, owned by ``owner``: True for the
        one caller that did it, whichever process asks."""
        stmt = (
            update(tables.runs)
            .where(R.id == run_id, R.user_id == user_id, R.status == "awaiting")
            .values(status=to, owner=owner)
        )
        return await self._changed(stmt)

    async def note_last_event(self, user_id: str, run_id: str, last_event_id: int) -> None:
        """Remember the id of the run's last event so far (when it stops for a person); it
        only ever grows."""
        stmt = (
            update(tables.runs)
            .where(R.id == run_id, R.user_id == user_id, R.last_event_id < last_event_id)
            .values(last_event_id=last_event_id)
        )
        await self._changed(stmt)

    async def interrupt_run(self, run: Run) -> bool:
        """Mark a run whose process died, and its streaming reply, ``interrupted`` (once)."""
        now = utcnow()
        owner_matches = R.owner.is_(None) if run.owner is None else R.owner == run.owner
        interrupted = (
            update(tables.runs)
            .where(R.id == run.id, R.user_id == run.user_id, R.status == "running", owner_matches)
            .values(status="interrupted", finished_at=now)
        )
        reply = (
            update(tables.messages)
            .where(M.id == run.message_id, M.user_id == run.user_id, M.status == "streaming")
            .values(status="interrupted", updated_at=now)
        )

        def interrupt(conn: Connection) -> bool:
            if not conn.execute(interrupted).rowcount:
                return False
            conn.execute(reply)
            return True

        return await self.write(interrupt)

    async def set_run(
        self,
        user_id: str,
        run_id: str,
        *,
        status: str | Keep = KEEP,
        owner: str | Keep | None = KEEP,
        state: RunState | Keep = KEEP,
    ) -> None:
        """Change the given columns of a run (a door's note in its state, a test's owner)."""
        values = given(status=status, owner=owner)
        if state is not KEEP:
            values["state"] = state.model_dump()
        stmt = update(tables.runs).where(R.id == run_id, R.user_id == user_id).values(**values)
        await self._changed(stmt)

    # pending approvals and elicitations --------------------------------------------------

    async def add_pending(self, pending: PendingInput) -> None:
        row = {**asdict(pending), "payload": pending.payload.model_dump(by_alias=True)}
        await self.write(lambda conn: conn.execute(insert(tables.pending_inputs), row))

    async def get_pending(self, user_id: str, run_id: str, kind: str, key: str) -> PendingInput:
        column = P.tool_call_id if kind == "approval" else P.id
        stmt = select(tables.pending_inputs).where(
            P.run_id == run_id, P.user_id == user_id, P.kind == kind, column == key
        )
        rows = await self.read(lambda conn: _pendings(conn, stmt))
        if not rows:
            raise NotFound(f"{kind} not found")
        return rows[0]

    async def answer_pending(
        self, user_id: str, pending_id: str, status: str, answer: dict[str, Any]
    ) -> bool:
        """Record the answer once: False when it was already answered (the caller's 409)."""
        stmt = (
            update(tables.pending_inputs)
            .where(P.id == pending_id, P.user_id == user_id, P.status == "pending")
            .values(status=status, answer=answer, answered_at=utcnow())
        )
        return await self._changed(stmt)

    async def mark_resumed(self, user_id: str, pending_id: str, payload: ApprovalAsk) -> None:
        """The run went on past this answer: ``payload`` with ``resumed`` set, so a later
        resumption of the same run does not act on it again."""
        resumed = payload.model_copy(update={"resumed": True})
        stmt = (
            update(tables.pending_inputs)
            .where(P.id == pending_id, P.user_id == user_id)
            .values(payload=resumed.model_dump())
        )
        await self._changed(stmt)

    async def pending_for_run(self, user_id: str, run_id: str) -> list[PendingInput]:
        stmt = (
            select(tables.pending_inputs)
            .where(P.run_id == run_id, P.user_id == user_id)
            .order_by(P.created_at)
        )
        return await self.read(lambda conn: _pendings(conn, stmt))

    async def pending_in_conversation(
        self, user_id: str, conversation_id: str
    ) -> list[PendingInput]:
        stmt = (
            select(tables.pending_inputs)
            .where(
                P.conversation_id == conversation_id,
                P.user_id == user_id,
                P.status == "pending",
            )
            .order_by(P.created_at)
        )
        return await self.read(lambda conn: _pendings(conn, stmt))


def _first_run(conn: Connection, stmt: Select[Any]) -> Run | None:
    row = conn.execute(stmt).mappings().first()
    return None if row is None else Run.from_row(row)


def _pendings(conn: Connection, stmt: Select[Any]) -> list[PendingInput]:
    return [_pending(row) for row in conn.execute(stmt).mappings()]


def _pending(row: Mapping[Any, Any]) -> PendingInput:
    values = dict(row)
    ask = ApprovalAsk if values["kind"] == "approval" else ElicitationAsk
    values["payload"] = ask.model_validate(values["payload"] or {})
    return PendingInput(**values)
