"""Local accounts (a password hash per user) and the page's cookie sessions.

The command line adds and removes accounts and the server checks them, two processes: the
database is what they share. A session is kept as the sha256 of its cookie, never the cookie; it
ends when its row is gone (sign-out, a new password, the account removed) or at ``expires_at``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, delete, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from parley.store import tables
from parley.store.base import StoreBase
from parley.store.values import utcnow

A = tables.accounts.c
W = tables.web_sessions.c


class Accounts:
    def __init__(self, store: StoreBase) -> None:
        self.store = store

    async def add(self, user_id: str, password_hash: str) -> bool:
        """A new account (and its user, if new); False when the account exists already."""
        now = utcnow()
        insert_ = pg_insert if self.store.dialect == "postgresql" else sqlite_insert
        user = insert_(tables.users).values(id=user_id, created_at=now).on_conflict_do_nothing()
        account = (
            insert_(tables.accounts)
            .values(user_id=user_id, password_hash=password_hash, created_at=now, updated_at=now)
            .on_conflict_do_nothing()
        )

        def add(conn: Connection) -> bool:
            conn.execute(user)
            return bool(conn.execute(account).rowcount)

        return await self.store.write(add)

    async def names(self) -> list[tuple[str, datetime]]:
        """Every account's user id and when it was made, by name."""
        stmt = select(A.user_id, A.created_at).order_by(A.user_id)
        rows = await self.store.read(lambda conn: conn.execute(stmt).all())
        return [(str(r.user_id), r.created_at) for r in rows]

    async def password_hash(self, user_id: str) -> str | None:
        stmt = select(A.password_hash).where(A.user_id == user_id)
        found = await self.store.read(lambda conn: conn.execute(stmt).scalar(), on_loop=True)
        return None if found is None else str(found)

    async def set_password(self, user_id: str, password_hash: str) -> bool:
        """A new password; the account's sessions end. False when there is no such account."""
        change = (
            update(tables.accounts)
            .where(A.user_id == user_id)
            .values(password_hash=password_hash, updated_at=utcnow())
        )

        def set_password(conn: Connection) -> bool:
            changed = bool(conn.execute(change).rowcount)
            conn.execute(delete(tables.web_sessions).where(W.user_id == user_id))
            return changed

        return await self.store.write(set_password)

    async def remove(self, user_id: str) -> bool:
        """The account and its sessions are gone (the user's conversations stay)."""

        def remove(conn: Connection) -> bool:
            conn.execute(delete(tables.web_sessions).where(W.user_id == user_id))
            return bool(conn.execute(delete(tables.accounts).where(A.user_id == user_id)).rowcount)

        return await self.store.write(remove)

    async def start_session(self, digest: str, user_id: str, expires_at: datetime) -> None:
        """Keep a new session, and forget the expired ones."""
        now = utcnow()
        row = {"digest": digest, "user_id": user_id, "expires_at": expires_at, "created_at": now}

        def start(conn: Connection) -> None:
            conn.execute(delete(tables.web_sessions).where(W.expires_at <= now))
            conn.execute(insert(tables.web_sessions), row)

        await self.store.write(start)

    async def session_user(self, digest: str) -> str | None:
        """The user of an unexpired session; None for any other."""
        stmt = select(W.user_id).where(W.digest == digest, W.expires_at > utcnow())
        found = await self.store.read(lambda conn: conn.execute(stmt).scalar(), on_loop=True)
        return None if found is None else str(found)

    async def end_session(self, digest: str) -> None:
        await self.store.write(
            lambda conn: conn.execute(delete(tables.web_sessions).where(W.digest == digest))
        )
