"""Alembic: ``upgrade head`` from empty matches the models, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.engine import Connection

from parley.store import migrate
from parley.store.db import create_engine
from parley.store.tables import Base

NOW = {"now": "2026-01-01 00:00:00.000000"}


def _diff(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


async def _assert_no_drift(url: str) -> None:
    engine = create_engine(url)
    async with engine.connect() as conn:
        diff = await conn.run_sync(_diff)
    await engine.dispose()
    assert diff == []


async def test_sqlite_upgrade_from_empty_matches_the_models(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}"
    migrate.upgrade(url)
    await _assert_no_drift(url)
    migrate.downgrade(url, "base")
    migrate.upgrade(url)
    await _assert_no_drift(url)


@pytest.mark.postgres
async def test_postgres_upgrade_from_empty_matches_the_models(postgres_migrated: str) -> None:
    await _assert_no_drift(postgres_migrated)


async def test_conversations_that_existed_before_0004_are_active(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
    migrate.upgrade(url, "0003")
    engine = create_engine(url)
    async with engine.begin() as conn:
        await conn.execute(text("INSERT INTO users (id, created_at) VALUES ('alice', :now)"), NOW)
        await conn.execute(
            text(
                "INSERT INTO conversations (id, user_id, metadata, prompt_tokens,"
                " completion_tokens, cost, created_at, updated_at)"
                " VALUES ('conv_old', 'alice', '{}', 0, 0, 0, :now, :now)"
            ),
            NOW,
        )
    migrate.upgrade(url)
    async with engine.connect() as conn:
        rows = (await conn.execute(text("SELECT id, status FROM conversations"))).all()
    await engine.dispose()
    assert [tuple(r) for r in rows] == [("conv_old", "active")]
