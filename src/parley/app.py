"""``create_app(settings)``: the FastAPI app; its lifespan builds the store, engine and registries."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

import parley.providers.builtin  # noqa: F401  (registers the built-in providers)
from parley import __version__
from parley.accounts import SignIns
from parley.api import errors
from parley.api.deps import Services
from parley.api.middleware import Edge
from parley.api.openapi import ERROR_RESPONSES
from parley.api.routes import (
    ag_ui,
    chat,
    chatkit,
    conversations,
    health,
    mcp_oauth,
    mcp_servers,
    openai_compat,
    openai_responses,
    projects,
    runs,
    sessions,
    signin,
    todo_chat,
    vercel,
    ws,
)
from parley.api.streaming import stop_streams_after
from parley.auth import tickets_for, verifier_for
from parley.config import Settings, check_single_user
from parley.credentials import CredentialVault
from parley.engine.tools import ToolRunner
from parley.engine.turn import Engine
from parley.limits import (
    Attempts,
    Limiter,
    MemoryAttempts,
    MemoryBackend,
    RedisAttempts,
    RedisBackend,
)
from parley.logging import configure as configure_logging
from parley.metrics import Metrics
from parley.metrics import router as metrics_router
from parley.providers.registry import ProviderRegistry, build_registry
from parley.runs.base import RunHub
from parley.runs.fanout import build_fanout
from parley.runs.manager import RunManager, new_instance_id
from parley.runs.memory import MemoryRunHub
from parley.store import Store, migrate
from parley.store.db import create_engine, session_factory
from parley.tools.mcp_oauth_flows import Connector, OAuthFlows, handshake
from parley.tools.registry import ToolRegistry
from parley.tools.setup import ToolManager, build_tools, register_delegates

if TYPE_CHECKING:
    from redis.asyncio import Redis  # imported only with PARLEY_REDIS_URL set


async def build_services(
    settings: Settings,
    *,
    providers: ProviderRegistry | None = None,
    tools: ToolRegistry | None = None,
) -> Services:
    """Everything a running parley needs, from the settings (tests may pass fakes)."""
    check_single_user(settings, settings.host)
    if settings.auto_migrate:
        await anyio.to_thread.run_sync(migrate.upgrade, settings.effective_database_url)
    engine = create_engine(settings.effective_database_url)
    store = Store(session_factory(engine))
    verifier = verifier_for(settings)
    providers = providers or build_registry(settings)
    credentials = CredentialVault.from_settings(settings, store)
    await credentials.rotate()
    tools = tools if tools is not None else await build_tools(settings, store, credentials)
    runner = ToolRunner(settings, store, tools)
    instance = new_instance_id()
    redis = connect_redis(settings)
    hub = await build_hub(settings, instance, redis)
    chat_engine = Engine(
        settings=settings,
        store=store,
        providers=providers,
        tools=runner,
        limiter=build_limiter(settings, redis),
    )
    register_delegates(chat_engine, tools, settings)
    manager = RunManager(
        engine=chat_engine, hub=hub, store=store, settings=settings, instance=instance
    )
    metrics = Metrics()
    fanout = build_fanout(settings.redis_url, ttl=settings.run_ttl)
    manager.listeners += [metrics, fanout]
    return Services(
        settings=settings,
        store=store,
        verifier=verifier,
        providers=providers,
        tools=tools,
        engine=chat_engine,
        runs=manager,
        tickets=tickets_for(settings),
        signins=SignIns(store, build_attempts(redis)),
        credentials=credentials,
        oauth=OAuthFlows(credentials, connect_as(tools)),
        metrics=metrics,
        fanout=fanout,
    )


def connect_as(tools: ToolRegistry) -> Connector:
    """How an OAuth flow connects: through the MCP server parley runs (which lists its tools
    through the new session), or, with a registry from a test, on its own."""
    return tools.connect_as if isinstance(tools, ToolManager) else handshake


def connect_redis(settings: Settings) -> Redis | None:
    """The client of ``PARLEY_REDIS_URL`` (the run hub closes it), or None without one."""
    if not settings.redis_url:
        return None
    from parley.runs.redis import connect

    return connect(settings.redis_url)


def build_limiter(settings: Settings, redis: Redis | None) -> Limiter:
    """Limits shared through ``redis`` (every process sees them), else per process."""
    if redis is not None:
        return Limiter(settings, RedisBackend(redis, settings.run_timeout))
    return Limiter(settings, MemoryBackend(settings.run_timeout))


def build_attempts(redis: Redis | None) -> Attempts:
    """Sign-in attempts counted in Redis when there is one, else per process."""
    return RedisAttempts(redis) if redis is not None else MemoryAttempts()


async def build_hub(settings: Settings, instance: str, redis: Redis | None) -> RunHub:
    """Redis Streams on ``redis`` (any process serves any run), else in memory."""
    if redis is not None:
        from parley.runs.redis import RedisRunHub

        hub: RunHub = RedisRunHub(
            redis,
            instance=instance,
            ttl=settings.run_ttl,
            owner_ttl=settings.owner_ttl,
        )
    else:
        hub = MemoryRunHub(ttl=settings.run_ttl, instance=instance)
    await hub.start()
    return hub


async def close_services(services: Services) -> None:
    await services.runs.aclose()
    if services.engine.summaries is not None:
        await services.engine.summaries.aclose()  # summaries and titles still being written
    await services.oauth.aclose()
    await services.tools.aclose()
    await services.runs.hub.aclose()
    await services.fanout.aclose()
    await services.providers.aclose()
    await services.store.close()


def create_app(
    settings: Settings | None = None,
    *,
    providers: ProviderRegistry | None = None,
    tools: ToolRegistry | None = None,
) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(
            json_logs=settings.log_json,
            log_content=settings.log_content,
            level=settings.log_level,
        )
        services = await build_services(settings, providers=providers, tools=tools)
        stop_streams_after(settings.shutdown_grace)
        await services.runs.recover()
        app.state.services = services
        sweeper = None
        if settings.redis_url:
            sweeper = asyncio.create_task(services.runs.sweep_forever(settings.owner_ttl))
        try:
            yield
        finally:
            if sweeper is not None:
                sweeper.cancel()
                await asyncio.gather(sweeper, return_exceptions=True)
            await close_services(services)

    app = FastAPI(
        title="parley",
        version=__version__,
        description="A self-hosted AI chat backend.",
        lifespan=lifespan,
        responses=ERROR_RESPONSES,
    )
    errors.install(app)
    app.include_router(chat.router)
    app.include_router(metrics_router)
    for module in (health, signin, conversations, projects, runs, mcp_servers, mcp_oauth):
        app.include_router(module.router)
    for door in (vercel, openai_compat, openai_responses, sessions, todo_chat, ws, chatkit, ag_ui):
        app.include_router(door.router)
    if settings.enable_chat_v2:
        app.include_router(vercel.playground)
    _mount_web(app)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["X-Run-Id", "X-Chat-Session-Id", "X-Request-Id", "X-Error-Code"],
        )
    app.add_middleware(
        Edge,
        max_body_bytes=settings.max_body_bytes,
        allowed_hosts=settings.effective_allowed_hosts,
        headers=settings.security_headers,
        csp=settings.effective_csp,
    )
    return app


def _mount_web(app: FastAPI) -> None:
    from fastapi.responses import FileResponse
    from fastapi.staticfiles import StaticFiles

    static = Path(__file__).parent / "web" / "static"
    index = static / "index.html"
    app.mount("/static", StaticFiles(directory=static), name="static")

    @app.get("/", include_in_schema=False, response_model=None)
    async def home() -> FileResponse:
        return FileResponse(index)
