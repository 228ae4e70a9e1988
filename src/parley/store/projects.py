"""Projects: conversations shared by role, and the one rule of who reaches a conversation.

A conversation outside a project is its user's alone. A project's conversation is reached by the
project's members, each with a role (``read`` < ``write`` < ``deploy`` < ``admin``); a project
made with a token's organisation claim is reached only with a token of that organisation,
members or not (DESIGN.md section 7). :func:`reachable` writes that rule into a statement's own
joins and WHERE clause, and every door that names a conversation or a run asks through it
(:meth:`ProjectStore.reach`, :meth:`ProjectStore.reach_run`): a caller who reaches nothing is
told "not found", whatever exists; one whose role is too low, "forbidden". The rows of a
conversation stay kept under its user (``Reach.owner``), whoever of the members asks.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    and_,
    bindparam,
    case,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from parley.chat.ids import new_id
from parley.errors import Conflict, Forbidden, NotFound
from parley.store import tables
from parley.store.base import StoreBase
from parley.store.conversations import OWNED, conversations_in, new_conversation, page_of, paged
from parley.store.values import (
    OWN,
    ROLES,
    Caller,
    Conversation,
    Member,
    Project,
    Reach,
    Role,
    Run,
    holds,
    utcnow,
)

P = tables.projects.c
PM = tables.project_members.c
C = tables.conversations.c
R = tables.runs.c
_REACH_COLUMNS = ("role", "project_instructions", "project_profile")
_ROLE_OF: dict[str, Role] = {role: role for role in ROLES}


def who(caller: Caller) -> dict[str, str]:
    """The caller as the bound parameters of :func:`reachable` (``b_caller``, ``b_org``)."""
    if caller.org_id is None:
        return {"b_caller": caller.user_id}
    return {"b_caller": caller.user_id, "b_org": caller.org_id}


def _same_org(with_org: bool) -> ColumnElement[bool]:
    """A project of no organisation, or of the caller's (``b_org``, when they have one)."""
    if not with_org:
        return P.org_id.is_(None)
    return or_(P.org_id.is_(None), P.org_id == bindparam("b_org"))


def reachable(stmt: Select[Any], with_org: bool) -> Select[Any]:
    """``stmt`` (over conversations, perhaps joined from another table) narrowed to the
    conversations the caller (:func:`who`) reaches, with their ``role`` and their project's
    ``project_instructions`` and ``project_profile`` as columns beside."""
    own = and_(C.project_id.is_(None), C.user_id == bindparam("b_caller"))
    member = and_(PM.project_id == P.id, PM.user_id == bindparam("b_caller"))
    return (
        stmt.outerjoin(tables.projects, and_(P.id == C.project_id, _same_org(with_org)))
        .outerjoin(tables.project_members, member)
        .add_columns(
            case((own, literal(OWN)), else_=PM.role).label("role"),
            P.instructions.label("project_instructions"),
            P.default_profile.label("project_profile"),
        )
        .where(or_(own, PM.user_id.is_not(None)))
    )


def check_role(role: str | None, need: Role, what: str) -> Role:
    """The caller's ``role``, when it is ``need`` or above: :class:`NotFound` when they have
    none (nothing confirms that ``what`` exists), :class:`Forbidden` when it is too low."""
    if role is None:
        raise NotFound(f"{what} not found")
    if not holds(role, need):
        raise Forbidden(f"this needs the {need} role in the project")
    return _ROLE_OF[role]


def _reach(row: Mapping[Any, Any], need: Role) -> Reach:
    values = dict(row)
    role, instructions, profile = (values.pop(name) for name in _REACH_COLUMNS)
    role = check_role(role, need, "conversation")
    return Reach(
        conversation=Conversation.from_row(values),
        role=role,
        instructions=instructions,
        default_profile=profile,
    )


# The statements of every request, built once with bound parameters (as turns.py's are)


@functools.cache
def _conversation_reached(with_org: bool) -> Select[Any]:
    by_id = C.id == bindparam("b_conversation")
    return reachable(select(tables.conversations), with_org).where(by_id)


@functools.cache
def _run_reached(with_org: bool) -> Select[Any]:
    joined = select(tables.runs).join(tables.conversations, C.id == R.conversation_id)
    return reachable(joined, with_org).where(R.id == bindparam("b_run"))


def _membership(with_org: bool) -> Select[Any]:
    """The projects the caller is a member of, with their role."""
    member = and_(PM.project_id == P.id, PM.user_id == bindparam("b_caller"))
    stmt = select(tables.projects, PM.role).join(tables.project_members, member)
    return stmt.where(_same_org(with_org))


@functools.cache
def _project_reached(with_org: bool) -> Select[Any]:
    return _membership(with_org).where(P.id == bindparam("b_project"))


def project(conn: Connection, caller: Caller, project_id: str, need: Role) -> Project:
    """The project as ``caller`` reaches it (see :func:`check_role`)."""
    stmt = _project_reached(caller.org_id is not None)
    row = conn.execute(stmt, {**who(caller), "b_project": project_id}).mappings().first()
    if row is None:
        raise NotFound("project not found")
    values = dict(row)
    return Project(**{**values, "role": check_role(values["role"], need, "project")})


def _members(conn: Connection, project_id: str) -> list[Member]:
    stmt = (
        select(PM.user_id, PM.role, PM.created_at)
        .where(PM.project_id == project_id)
        .order_by(PM.created_at, PM.user_id)
    )
    return [
        Member(user_id=r["user_id"], role=_ROLE_OF[r["role"]], created_at=r["created_at"])
        for r in conn.execute(stmt).mappings()
    ]


class ProjectStore(StoreBase):
    # reaching a conversation or a run: every door's one question -------------------------

    async def reach(self, caller: Caller, conversation_id: str, need: Role = "read") -> Reach:
        """The conversation ``caller`` names, with their role in it: their own, or one of a
        project they are a member of (in their organisation); see :func:`check_role`."""
        stmt = _conversation_reached(caller.org_id is not None)
        params = {**who(caller), "b_conversation": conversation_id}

        def find(conn: Connection) -> Reach:
            row = conn.execute(stmt, params).mappings().first()
            return _reach(_NONE if row is None else row, need)

        return await self.read(find, on_loop=True)

    async def reach_run(self, caller: Caller, run_id: str, need: Role = "read") -> Run:
        """The run ``caller`` names, when they reach its conversation with ``need``."""
        stmt = _run_reached(caller.org_id is not None)
        params = {**who(caller), "b_run": run_id}

        def find(conn: Connection) -> Run:
            row = conn.execute(stmt, params).mappings().first()
            values = dict(_NONE if row is None else row)
            check_role(values.get("role"), need, "run")
            return Run.from_row({c.name: values[c.name] for c in tables.runs.columns})

        return await self.read(find, on_loop=True)

    async def create_in_project(
        self, caller: Caller, project_id: str, fields: dict[str, Any]
    ) -> Conversation:
        """A new conversation of the project, kept under ``caller`` (who needs ``write``)."""
        await self.ensure_user(caller.user_id)

        def create(conn: Connection) -> Conversation:
            project(conn, caller, project_id, "write")
            return new_conversation(conn, caller.user_id, {**fields, "project_id": project_id})

        return await self.write(create)

    async def list_project_conversations(
        self,
        caller: Caller,
        project_id: str,
        *,
        limit: int,
        cursor: str | None = None,
        q: str | None = None,
        status: str = "active",
        skip: int = 0,
    ) -> tuple[Sequence[Conversation], str | None]:
        """The project's conversations, for any member: pages as
        :meth:`~parley.store.conversations.ConversationStore.list_conversations`."""
        reached = reachable(select(tables.conversations), caller.org_id is not None)
        scoped = reached.where(C.project_id == project_id)
        stmt = paged(scoped, limit, cursor, q, status, skip, oldest_first=False)
        plain = stmt.with_only_columns(*tables.conversations.columns)

        def page(conn: Connection) -> list[Conversation]:
            project(conn, caller, project_id, "read")
            return conversations_in(conn, plain, who(caller))

        return page_of(await self.read(page), limit)

    # projects ----------------------------------------------------------------------------

    async def create_project(self, caller: Caller, **fields: Any) -> Project:
        """A new project of the caller's organisation, with the caller as its admin."""
        await self.ensure_user(caller.user_id)
        now, ident = utcnow(), new_id("proj")
        row: dict[str, Any] = {"id": ident, "owner": caller.user_id, "org_id": caller.org_id}
        row.update(fields, created_at=now, updated_at=now)
        admin = {"project_id": ident, "user_id": caller.user_id, "role": "admin"}

        def create(conn: Connection) -> Project:
            conn.execute(insert(tables.projects), row)
            conn.execute(insert(tables.project_members), {**admin, "created_at": now})
            return project(conn, caller, ident, "admin")

        return await self.write(create)

    async def list_projects(self, caller: Caller, *, limit: int) -> list[Project]:
        """The projects the caller is a member of, in their organisation, newest first."""
        stmt = _membership(caller.org_id is not None)
        stmt = stmt.order_by(P.updated_at.desc(), P.id.desc()).limit(limit)

        def rows(conn: Connection) -> list[Project]:
            found = conn.execute(stmt, who(caller)).mappings()
            return [Project(**{**r, "role": _ROLE_OF[r["role"]]}) for r in found]

        return await self.read(rows)

    async def get_project(self, caller: Caller, project_id: str) -> tuple[Project, list[Member]]:
        """The project and its members, for any member."""

        def read(conn: Connection) -> tuple[Project, list[Member]]:
            return project(conn, caller, project_id, "read"), _members(conn, project_id)

        return await self.read(read)

    async def update_project(
        self, caller: Caller, project_id: str, fields: dict[str, Any]
    ) -> Project:
        """Rename or re-describe the project (``admin``)."""
        stmt = update(tables.projects).where(P.id == project_id)

        def change(conn: Connection) -> Project:
            project(conn, caller, project_id, "admin")
            conn.execute(stmt.values(**fields, updated_at=utcnow()))
            return project(conn, caller, project_id, "admin")

        return await self.write(change)

    async def delete_project(self, caller: Caller, project_id: str) -> None:
        """The project, its members, and its conversations with all their rows (``admin``)."""
        inside = select(C.id).where(C.project_id == project_id).scalar_subquery()

        def remove(conn: Connection) -> None:
            project(conn, caller, project_id, "admin")
            for table in OWNED:
                conn.execute(delete(table).where(table.c.conversation_id.in_(inside)))
            conn.execute(delete(tables.conversations).where(C.project_id == project_id))
            conn.execute(delete(tables.project_members).where(PM.project_id == project_id))
            conn.execute(delete(tables.projects).where(P.id == project_id))

        await self.write(remove)

    async def set_member(self, caller: Caller, project_id: str, user_id: str, role: Role) -> Member:
        """Add ``user_id`` to the project, or change their role (``admin``)."""
        insert_ = pg_insert if self.dialect == "postgresql" else sqlite_insert
        now = utcnow()
        row = {"project_id": project_id, "user_id": user_id, "role": role, "created_at": now}
        stmt = insert_(tables.project_members).values(row)
        upsert = stmt.on_conflict_do_update(
            index_elements=[PM.project_id, PM.user_id], set_={"role": role}
        )

        def change(conn: Connection) -> Member:
            project(conn, caller, project_id, "admin")
            conn.execute(upsert)
            _keep_an_admin(conn, project_id)
            found = [m for m in _members(conn, project_id) if m.user_id == user_id]
            return found[0]

        return await self.write(change)

    async def remove_member(self, caller: Caller, project_id: str, user_id: str) -> None:
        """Take ``user_id`` out of the project (``admin``): they reach none of it any more."""
        stmt = delete(tables.project_members).where(
            PM.project_id == project_id, PM.user_id == user_id
        )

        def remove(conn: Connection) -> None:
            project(conn, caller, project_id, "admin")
            if not conn.execute(stmt).rowcount:
                raise NotFound("member not found")
            _keep_an_admin(conn, project_id)

        await self.write(remove)


_NONE: Mapping[str, Any] = {"role": None, "project_instructions": None, "project_profile": None}


def _keep_an_admin(conn: Connection, project_id: str) -> None:
    """A project keeps at least one admin (the change is rolled back otherwise)."""
    admins = (
        select(func.count())
        .select_from(tables.project_members)
        .where(PM.project_id == project_id, PM.role == "admin")
    )
    if not conn.execute(admins).scalar():
        raise Conflict("a project keeps at least one admin")
