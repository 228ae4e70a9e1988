"""Two real parley processes on loopback sharing PostgreSQL and Redis, and a fake model."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from tests.conftest import POSTGRES_URL, REDIS_URL, SECRET, _truncate_postgres
from tests.fakes.openai_server import FakeOpenAI
from tests.support.processes import ParleyProcess, start_parley

from parley.store import migrate


async def _flush_redis() -> None:
    client = aioredis.from_url(REDIS_URL)
    await client.flushdb()
    await client.aclose()


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as server:
        yield server


@pytest.fixture
def pair_env() -> dict[str, str]:
    return {}


@pytest.fixture
async def pair(
    postgres_migrated: str, fake: FakeOpenAI, tmp_path: Path, pair_env: dict[str, str]
) -> AsyncIterator[tuple[ParleyProcess, ParleyProcess]]:
    async with started_pair(postgres_migrated, fake, tmp_path, pair_env) as pair:
        yield pair


@contextlib.asynccontextmanager
async def started_pair(
    postgres_migrated: str, fake: FakeOpenAI, tmp_path: Path, extra: dict[str, str]
) -> AsyncIterator[tuple[ParleyProcess, ParleyProcess]]:
    """Two ``parley serve`` on emptied PostgreSQL and Redis, asking ``fake``; ``extra`` env."""
    await _truncate_postgres(postgres_migrated)
    await _flush_redis()
    migrate.upgrade(POSTGRES_URL)
    env = {
        "PARLEY_DATABASE_URL": POSTGRES_URL,
        "PARLEY_REDIS_URL": REDIS_URL,
        "PARLEY_JWT_SECRET": SECRET,
        "PARLEY_PROVIDER": "openai",
        "PARLEY_MODEL": "fake-model",
        "OPENAI_BASE_URL": f"{fake.url}/v1",
        "OPENAI_API_KEY": "sk-fake",
        "PARLEY_OWNER_TTL": "1.5",
        "PARLEY_DATA_DIR": str(tmp_path / "data"),
        **extra,
    }
    a = await start_parley(env, tmp_path, name="a")
    try:
        b = await start_parley(env, tmp_path, name="b")
    except Exception:
        a.stop()
        raise
    try:
        yield a, b
    finally:
        a.stop()
        b.stop()
