"""Pending one-time sign-in codes (:mod:`parley.signin`), kept as their sha256 digests.

The command line writes a code and the server redeems it, two processes: the database is what
they share. A code is taken by one ``DELETE … RETURNING``, so two redemptions of the same code
cannot both succeed.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete

from parley.store.repositories import Store
from parley.store.tables import SigninCode, utcnow


class SigninCodes:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def add(self, digest: str, user_id: str, expires_at: datetime) -> None:
        """Keep a new code, and forget the expired ones."""
        async with self.store.writing() as session:
            await session.execute(delete(SigninCode).where(SigninCode.expires_at <= utcnow()))
            session.add(SigninCode(digest=digest, user_id=user_id, expires_at=expires_at))

    async def take(self, digest: str) -> str | None:
        """The user of an unexpired code, which is gone afterwards; None for any other."""
        stmt = (
            delete(SigninCode)
            .where(SigninCode.digest == digest)
            .returning(SigninCode.user_id, SigninCode.expires_at)
        )
        async with self.store.writing() as session:
            row = (await session.execute(stmt)).first()
        if row is None or row.expires_at <= utcnow():
            return None
        return str(row.user_id)
