"""Run Alembic migrations from code (``parley migrate`` and ``serve`` on start)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def _outside_loop(func: Callable[[], None]) -> None:
    """Alembic's async env runs its own event loop: never inside a running one."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        func()
        return
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(func).result()


def upgrade(database_url: str, revision: str = "head") -> None:
    """Apply migrations up to ``revision`` (blocking)."""
    _outside_loop(lambda: command.upgrade(alembic_config(database_url), revision))


def downgrade(database_url: str, revision: str) -> None:
    _outside_loop(lambda: command.downgrade(alembic_config(database_url), revision))
