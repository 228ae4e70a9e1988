"""The database engine: parley's own SQLite file is private to the user running it; a
PostgreSQL URL as hosts hand it out (libpq's form) works."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import QueuePool, text
from tests.conftest import make_settings, serve

from parley.config import Settings, ensure_jwt_secret
from parley.errors import ConfigError
from parley.providers.scripted import ScriptedProvider
from parley.store.db import create_engine, for_asyncpg
from parley.tools.registry import ToolRegistry


@pytest.fixture(autouse=True)
def _usual_umask() -> Iterator[None]:
    """The common 022: without parley's care, files 0644 and directories 0755."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_the_sqlite_database_and_its_wal_are_created_0600_in_a_0700_directory(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    engine = create_engine(f"sqlite+aiosqlite:///{data / 'parley.db'}")
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE t (x INTEGER)"))
        await conn.execute(text("INSERT INTO t VALUES (1)"))
        wal_mode = mode(data / "parley.db-wal")  # gone once the last connection closes
    await engine.dispose()
    assert wal_mode == 0o600
    assert mode(data) == 0o700
    assert mode(data / "parley.db") == 0o600


async def test_an_existing_database_keeps_its_mode_and_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "parley.db"
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE t (x INTEGER)"))
        await conn.execute(text("INSERT INTO t VALUES (7)"))
    await engine.dispose()
    path.chmod(0o640)
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT x FROM t"))).scalar_one() == 7
    await engine.dispose()
    assert mode(path) == 0o640


def test_the_data_directory_parley_makes_for_its_secret_is_0700(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    ensure_jwt_secret(settings)
    assert mode(tmp_path / "data") == 0o700
    assert mode(settings.jwt_secret_path) == 0o600


# PostgreSQL URLs as hosts hand them out (libpq's form), for asyncpg


def test_a_libpq_url_gets_the_asyncpg_driver_and_sslmode_becomes_ssl() -> None:
    url, connect_args = for_asyncpg("postgresql://user:pw@ep-x.neon.tech/db?sslmode=require")
    assert url.drivername == "postgresql+asyncpg"
    assert (url.username, url.password, url.host, url.database) == (
        "user",
        "pw",
        "ep-x.neon.tech",
        "db",
    )
    assert dict(url.query) == {"ssl": "require"}
    assert connect_args == {}


def test_the_postgres_scheme_is_libpq_style_too() -> None:
    url, _ = for_asyncpg("postgres://user@host:6543/db?sslmode=verify-full")
    assert url.drivername == "postgresql+asyncpg"
    assert url.port == 6543
    assert dict(url.query) == {"ssl": "verify-full"}


def test_libpq_parameters_become_what_asyncpg_takes_and_client_only_ones_are_dropped() -> None:
    url, connect_args = for_asyncpg(
        "postgresql://u:p@host/db?sslmode=require&channel_binding=require&connect_timeout=10"
        "&application_name=parley&sslrootcert=/etc/ssl/ca.pem&keepalives=1"
    )
    assert dict(url.query) == {"ssl": "require"}
    assert connect_args == {
        "timeout": 10.0,
        "server_settings": {"application_name": "parley"},
        "dsn": "postgresql://?sslrootcert=%2Fetc%2Fssl%2Fca.pem",
    }


def test_an_asyncpg_url_and_a_sqlite_url_are_left_as_they_are() -> None:
    for given in ("postgresql+asyncpg://u@host/db?ssl=require", "sqlite+aiosqlite:///x.db"):
        url, connect_args = for_asyncpg(given)
        assert url.render_as_string(hide_password=False) == given
        assert connect_args == {}


def test_an_unknown_parameter_in_a_libpq_url_is_refused_at_start_up() -> None:
    with pytest.raises(ConfigError, match="'sslmod'"):
        for_asyncpg("postgresql://u@host/db?sslmod=require")
    with pytest.raises(ValidationError, match="'sslmod'"):
        Settings(database_url="postgresql://u@host/db?sslmod=require")


@pytest.mark.postgres
async def test_a_libpq_url_with_sslmode_disable_connects_to_postgres() -> None:
    engine = create_engine("postgresql://postgres@127.0.0.1:5432/test?sslmode=disable")
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT current_database()"))).scalar_one() == "test"
    await engine.dispose()


@pytest.mark.postgres
async def test_sslmode_require_reaches_asyncpg_which_asks_the_server_for_tls() -> None:
    """The local server has no TLS: asked for it, it says no (libpq would say the same)."""
    engine = create_engine("postgresql://postgres@127.0.0.1:5432/test?sslmode=require")
    with pytest.raises(ConnectionError, match="rejected SSL upgrade"):
        async with engine.connect():
            pass
    await engine.dispose()


@pytest.mark.postgres
async def test_parley_starts_migrates_and_serves_on_a_libpq_url(
    postgres_migrated: str, tmp_path: Path
) -> None:
    libpq = postgres_migrated.replace("postgresql+asyncpg://", "postgresql://") + "?sslmode=disable"
    settings = make_settings(tmp_path, libpq, auto_migrate=True)
    async for live in serve(settings, ScriptedProvider(turns=[]), ToolRegistry()):
        async with live.client("libpq-user") as client:
            created = await client.post("/api/conversations", json={"title": "on libpq"})
            assert created.status_code == 201
            listed = await client.get("/api/conversations")
        assert [c["title"] for c in listed.json()["items"]] == ["on libpq"]


@pytest.mark.postgres
async def test_a_pooled_connection_the_server_dropped_is_replaced_not_handed_out() -> None:
    """The pool checks a connection as it leaves (store/db.py ``_ping``), in one round trip, and
    keeps the connections it opened."""
    engine = create_engine("postgresql+asyncpg://postgres@127.0.0.1:5432/test", pool_size=2)
    statements: list[str] = []
    try:
        async with engine.connect() as first, engine.connect() as second:
            dropped = (await first.execute(text("SELECT pg_backend_pid()"))).scalar_one()
            driver = (await second.get_raw_connection()).driver_connection
            assert driver is not None
            driver.add_query_logger(lambda record: statements.append(record.query))
        # the pool hands out the one returned first (``second``), then the other
        async with engine.connect() as conn:
            await conn.execute(text(f"SELECT pg_terminate_backend({dropped})"))
        async with engine.connect() as conn:  # ``first``: its server process is gone
            pid = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        assert pid != dropped
        assert statements[: statements.index("BEGIN;")] == ["SELECT 1"]  # the check, alone
        assert isinstance(engine.pool, QueuePool) and engine.pool.checkedin() == 2  # kept
    finally:
        await engine.dispose()
