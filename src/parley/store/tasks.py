"""Tasks of the built-in todo tools. Every statement puts the user id in its WHERE clause."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, delete, insert, select, update

from parley.errors import NotFound
from parley.store import tables
from parley.store.base import StoreBase
from parley.store.values import KEEP, Keep, Task, given, utcnow

K = tables.tasks.c
_ROW = tuple(tables.tasks.columns)


class TaskStore(StoreBase):
    async def add_task(self, user_id: str, title: str, description: str | None) -> Task:
        await self.ensure_user(user_id)
        now = utcnow()
        stmt = (
            insert(tables.tasks)
            .values(user_id=user_id, title=title, description=description, completed=False)
            .values(created_at=now, updated_at=now)
            .returning(*_ROW)
        )
        return await self.write(lambda conn: Task(**conn.execute(stmt).mappings().one()))

    async def list_tasks(self, user_id: str, completed: bool | None = None) -> list[Task]:
        stmt = select(tables.tasks).where(K.user_id == user_id)
        if completed is not None:
            stmt = stmt.where(K.completed.is_(completed))
        stmt = stmt.order_by(K.id)
        return await self.read(lambda conn: [Task(**r) for r in conn.execute(stmt).mappings()])

    async def get_task(self, user_id: str, task_id: int) -> Task:
        stmt = select(tables.tasks).where(K.id == task_id, K.user_id == user_id)
        return await self.read(lambda conn: _one(conn, stmt, task_id))

    async def update_task(
        self,
        user_id: str,
        task_id: int,
        *,
        title: str | Keep = KEEP,
        description: str | Keep | None = KEEP,
        completed: bool | Keep = KEEP,
    ) -> Task:
        """Change the given fields of a task; a field not given is kept."""
        values = given(title=title, description=description, completed=completed)
        stmt = (
            update(tables.tasks)
            .where(K.id == task_id, K.user_id == user_id)
            .values(**values, updated_at=utcnow())
            .returning(*_ROW)
        )
        return await self.write(lambda conn: _one(conn, stmt, task_id))

    async def delete_task(self, user_id: str, task_id: int) -> None:
        stmt = delete(tables.tasks).where(K.id == task_id, K.user_id == user_id)
        if not await self._changed(stmt):
            raise NotFound(f"task {task_id} not found")


def _one(conn: Connection, stmt: Any, task_id: int) -> Task:
    row = conn.execute(stmt).mappings().first()
    if row is None:
        raise NotFound(f"task {task_id} not found")
    return Task(**row)
