"""Alembic: ``upgrade head`` from empty matches the models, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Connection

from parley.store import migrate
from parley.store.db import create_engine
from parley.store.tables import Base


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
