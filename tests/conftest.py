"""Shared fixtures: a clean environment, databases (SQLite always, PostgreSQL when reachable),
and a live parley on a real loopback socket, driven from the test's own event loop."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from parley.api.deps import Services
from parley.app import create_app
from parley.auth import issue_token
from parley.config import Settings
from parley.providers.capabilities import ModelCatalog
from parley.providers.registry import ProviderRegistry
from parley.providers.scripted import ScriptedProvider
from parley.store import migrate
from parley.tools.registry import ToolRegistry

SECRET = "test-secret-" + "x" * 40
POSTGRES_SERVER_URL = os.environ.get(
    "PARLEY_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
# Each pytest run gets its own database beside the configured one, so that two runs on one
# machine (a developer's and a helper's, say) never truncate each other's tables.
_RUN_DATABASE = f"parley_test_{os.getpid()}"
POSTGRES_URL = POSTGRES_SERVER_URL.rsplit("/", 1)[0] + "/" + _RUN_DATABASE
REDIS_URL = os.environ.get("PARLEY_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")

_CLEARED = ("PARLEY_", "OPENAI_", "ANTHROPIC_")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Tests build Settings directly: nothing leaks in from the environment or a parley.toml."""
    for name in list(os.environ):
        if name.startswith(_CLEARED) and not name.startswith("PARLEY_TEST_"):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PARLEY_CONFIG", str(tmp_path / "absent.toml"))


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


POSTGRES_UP = _reachable("127.0.0.1", 5432)
REDIS_UP = _reachable("127.0.0.1", 6379)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "parley.db"
    migrate.upgrade(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def postgres_migrated() -> Iterator[str]:
    if not POSTGRES_UP:
        pytest.skip("PostgreSQL is not reachable at 127.0.0.1:5432")
    _run_async(_create_run_database())
    migrate.upgrade(POSTGRES_URL)
    yield POSTGRES_URL
    _run_async(_drop_run_database())


def _run_async(coro: Any) -> None:
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, coro).result()


async def _create_run_database() -> None:
    engine = create_async_engine(POSTGRES_SERVER_URL, isolation_level="AUTOCOMMIT")
    async with engine.connect() as conn:
        await conn.execute(text(f'DROP DATABASE IF EXISTS "{_RUN_DATABASE}" WITH (FORCE)'))
        await conn.execute(text(f'CREATE DATABASE "{_RUN_DATABASE}"'))
    await engine.dispose()


async def _drop_run_database() -> None:
    engine = create_async_engine(POSTGRES_SERVER_URL, isolation_level="AUTOCOMMIT")
    async with engine.connect() as conn:
        await conn.execute(text(f'DROP DATABASE IF EXISTS "{_RUN_DATABASE}" WITH (FORCE)'))
    await engine.dispose()


async def _truncate_postgres(url: str) -> None:
    engine = create_async_engine(url)
    tables = (
        "users, conversations, messages, runs, tool_calls, pending_inputs, approval_rules, tasks,"
        " projects, project_members"
    )
    async with engine.begin() as conn:
        await conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    await engine.dispose()


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    path = tmp_path / "parley.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test using this runs on SQLite and again on PostgreSQL (skipped when unreachable)."""
    if request.param == "sqlite":
        url: str = request.getfixturevalue("sqlite_url")
        return url
    url = request.getfixturevalue("postgres_migrated")
    await _truncate_postgres(url)
    return url


def make_settings(tmp_path: Path, database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "database_url": database_url,
        "jwt_secret": SECRET,
        "auto_migrate": False,
        "provider": "scripted",
        "auto_titles": False,  # a title is one more model call: the tests that want it say so
        "shutdown_grace": 0,  # an app closed mid-run stops it at once: the tests that drain say so
    }
    values.update(overrides)
    return Settings(**values)


def token(user: str, **kwargs: Any) -> str:
    return issue_token(SECRET, user, **kwargs)


def auth(user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(user)}"}


@dataclass
class Live:
    """A parley served by uvicorn on a loopback port, in this test's event loop."""

    url: str
    app: Any
    scripted: ScriptedProvider
    tools: ToolRegistry

    @property
    def services(self) -> Services:
        services: Services = self.app.state.services
        return services

    def client(self, user: str | None = "alice", **kwargs: Any) -> httpx.AsyncClient:
        headers = auth(user) if user else {}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=10, **kwargs)


async def serve(
    settings: Settings,
    scripted: ScriptedProvider,
    tools: ToolRegistry | None,
    *,
    embedded: bool = False,
) -> AsyncIterator[Live]:
    """``embedded``: the providers and tools `parley serve` builds from ``settings``, as a new
    user gets them (``scripted`` and ``tools`` then only stand in the returned ``Live``)."""
    registry = ProviderRegistry(default="scripted", catalog=ModelCatalog(settings.models))
    registry.register("scripted", scripted, default_model="demo")
    if embedded:
        app = create_app(settings)
    else:
        app = create_app(settings, providers=registry, tools=tools)
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        tools = tools or app.state.services.tools
        yield Live(url=f"http://127.0.0.1:{port}", app=app, scripted=scripted, tools=tools)
    finally:
        server.should_exit = True
        await task


@pytest.fixture
def scripted() -> ScriptedProvider:
    return ScriptedProvider(turns=[])


@pytest.fixture
def tool_registry() -> ToolRegistry:
    return ToolRegistry()


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {}


@pytest.fixture
async def live(
    tmp_path: Path,
    sqlite_url: str,
    scripted: ScriptedProvider,
    tool_registry: ToolRegistry,
    settings_overrides: dict[str, Any],
) -> AsyncIterator[Live]:
    settings = make_settings(tmp_path, sqlite_url, **settings_overrides)
    async for item in serve(settings, scripted, tool_registry):
        yield item


@pytest.fixture
async def live_any_db(
    tmp_path: Path,
    database_url: str,
    scripted: ScriptedProvider,
    tool_registry: ToolRegistry,
    settings_overrides: dict[str, Any],
) -> AsyncIterator[Live]:
    settings = make_settings(tmp_path, database_url, **settings_overrides)
    async for item in serve(settings, scripted, tool_registry):
        yield item


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def pytest_report_header(config: pytest.Config) -> list[str]:
    lines = [f"PostgreSQL: {'reachable' if POSTGRES_UP else 'NOT reachable: postgres tests skip'}"]
    lines.append(f"Redis: {'reachable' if REDIS_UP else 'NOT reachable: redis tests skip'}")
    return lines


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--soak-minutes",
        type=float,
        default=None,
        help="run the soak tests (marked soak) for this long; without it they are skipped",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_soak = pytest.mark.skip(reason="a soak test: run it with --soak-minutes (make soak)")
    soaking = config.getoption("--soak-minutes") is not None
    skip_pg = pytest.mark.skip(reason="PostgreSQL is not reachable at 127.0.0.1:5432")
    skip_redis = pytest.mark.skip(reason="Redis is not reachable at 127.0.0.1:6379")
    for item in items:
        if "soak" in item.keywords and not soaking:
            item.add_marker(skip_soak)
        if "postgres" in item.keywords and not POSTGRES_UP:
            item.add_marker(skip_pg)
        if "redis" in item.keywords and not REDIS_UP:
            item.add_marker(skip_redis)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """At the very end, each kind of test that did not run and why, so a skip is never silent."""
    skipped: dict[str, set[str]] = {}
    for report in terminalreporter.stats.get("skipped", []):
        reason = str(report.longrepr[2]) if isinstance(report.longrepr, tuple) else "skipped"
        suite = report.nodeid.split("::")[0].rsplit("/", 1)[0]
        skipped.setdefault(reason.removeprefix("Skipped: "), set()).add(suite)
    if not skipped:
        return
    terminalreporter.write_sep("=", "what did not run, and why")
    for reason, suites in sorted(skipped.items()):
        terminalreporter.write_line(f"{reason}  ({', '.join(sorted(suites))})")
