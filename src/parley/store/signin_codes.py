"""Pending one-time sign-in codes (:mod:`parley.signin`), kept as their sha256 digests.

The command line writes a code and the server redeems it, two processes: the database is what
they share. A code is taken by one ``DELETE … RETURNING``, so two redemptions of the same code
cannot both succeed.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, delete, insert

from parley.store import tables
from parley.store.base import StoreBase
from parley.store.values import utcnow

S = tables.signin_codes.c


class SigninCodes:
    def __init__(self, store: StoreBase) -> None:
        self.store = store

    async def add(self, digest: str, user_id: str, expires_at: datetime) -> None:
        """Keep a new code, and forget the expired ones."""
        now = utcnow()
        row = {"digest": digest, "user_id": user_id, "expires_at": expires_at, "created_at": now}

        def add(conn: Connection) -> None:
            conn.execute(delete(tables.signin_codes).where(S.expires_at <= now))
            conn.execute(insert(tables.signin_codes), row)

        await self.store.write(add)

    async def take(self, digest: str) -> str | None:
        """The user of an unexpired code, which is gone afterwards; None for any other."""
        stmt = (
            delete(tables.signin_codes).where(S.digest == digest).returning(S.user_id, S.expires_at)
        )
        row = await self.store.write(lambda conn: conn.execute(stmt).first())
        if row is None or row.expires_at <= utcnow():
            return None
        return str(row.user_id)
