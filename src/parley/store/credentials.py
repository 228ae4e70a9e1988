"""Users' own MCP credentials, as sealed text: the store never sees a plaintext credential
(:mod:`parley.credentials` seals and opens them). Every statement is scoped by the user, but for
the key rotation at start-up, which re-seals every row and is no user's request.
"""

from __future__ import annotations

from typing import NamedTuple

from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from parley.store import tables
from parley.store.base import StoreBase
from parley.store.values import utcnow

C = tables.mcp_credentials.c


class SealedRow(NamedTuple):
    user_id: str
    server: str
    sealed: str


class McpCredentials:
    def __init__(self, store: StoreBase) -> None:
        self.store = store

    async def put(self, user_id: str, server: str, sealed: str, kind: str = "headers") -> None:
        """Keep ``user_id``'s credential for ``server``, replacing the one before."""
        await self.store.ensure_user(user_id)
        now = utcnow()
        insert_ = pg_insert if self.store.dialect == "postgresql" else sqlite_insert
        row = {"user_id": user_id, "server": server, "kind": kind, "sealed": sealed}
        stmt = insert_(tables.mcp_credentials).values(**row, created_at=now, updated_at=now)
        stmt = stmt.on_conflict_do_update(
            index_elements=[C.user_id, C.server],
            set_={"kind": kind, "sealed": sealed, "updated_at": now},
        )
        await self.store.write(lambda conn: conn.execute(stmt))

    async def sealed(self, user_id: str, server: str, kind: str = "headers") -> str | None:
        stmt = select(C.sealed).where(C.user_id == user_id, C.server == server, C.kind == kind)
        found = await self.store.read(lambda conn: conn.execute(stmt).scalar(), on_loop=True)
        return None if found is None else str(found)

    async def servers(self, user_id: str) -> dict[str, str]:
        """The servers ``user_id`` has a credential for, with its kind."""
        stmt = select(C.server, C.kind).where(C.user_id == user_id)
        rows = await self.store.read(lambda conn: conn.execute(stmt).all())
        return {str(row.server): str(row.kind) for row in rows}

    async def delete(self, user_id: str, server: str) -> bool:
        """Forget ``user_id``'s credential for ``server``; False when there was none."""
        stmt = delete(tables.mcp_credentials).where(C.user_id == user_id, C.server == server)
        return await self.store.write(lambda conn: bool(conn.execute(stmt).rowcount))

    async def every_row(self) -> list[SealedRow]:
        """Every user's sealed credentials: for re-sealing them under a new key only."""
        stmt = select(C.user_id, C.server, C.sealed)
        rows = await self.store.read(lambda conn: conn.execute(stmt).all())
        return [SealedRow(str(r.user_id), str(r.server), str(r.sealed)) for r in rows]

    async def reseal(self, row: SealedRow, sealed: str) -> bool:
        """Replace ``row``'s sealed text, unless the user changed it meanwhile."""
        stmt = (
            update(tables.mcp_credentials)
            .where(C.user_id == row.user_id, C.server == row.server, C.sealed == row.sealed)
            .values(sealed=sealed)
        )
        return await self.store.write(lambda conn: bool(conn.execute(stmt).rowcount))
