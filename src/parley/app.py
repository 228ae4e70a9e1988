"""``create_app(settings)``: the FastAPI app; its lifespan builds the store, engine and registries."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

import parley.providers.builtin  # noqa: F401  (registers the built-in providers)
from parley import __version__
from parley.api import errors
from parley.api.deps import Services
from parley.api.middleware import BodyLimit, RequestId
from parley.api.routes import chat, conversations, dev, health, runs
from parley.auth import TokenVerifier
from parley.config import Settings, ensure_jwt_secret
from parley.engine.runner import RunManager
from parley.engine.tools import ToolRunner
from parley.engine.turn import Engine
from parley.providers.registry import ProviderRegistry, build_registry
from parley.runs.memory import MemoryRunHub
from parley.store import migrate
from parley.store.db import create_engine, session_factory
from parley.store.repositories import Store
from parley.tools.registry import ToolRegistry


async def build_services(
    settings: Settings,
    *,
    providers: ProviderRegistry | None = None,
    tools: ToolRegistry | None = None,
) -> Services:
    """Everything a running parley needs, from the settings (tests may pass fakes)."""
    if settings.auto_migrate:
        await anyio.to_thread.run_sync(migrate.upgrade, settings.effective_database_url)
    engine = create_engine(settings.effective_database_url)
    store = Store(session_factory(engine))
    secret = (
        ensure_jwt_secret(settings) if settings.jwks_url is None or settings.jwt_secret else None
    )
    verifier = TokenVerifier(
        secret=secret,
        jwks_url=settings.jwks_url,
        audience=settings.jwt_audience,
        issuer=settings.jwt_issuer,
    )
    providers = providers or build_registry(settings)
    tools = tools or ToolRegistry()
    runner = ToolRunner(settings, store, tools)
    chat_engine = Engine(settings=settings, store=store, providers=providers, tools=runner)
    hub = MemoryRunHub(ttl=settings.run_ttl)
    manager = RunManager(engine=chat_engine, hub=hub, store=store, settings=settings)
    return Services(
        settings=settings,
        store=store,
        verifier=verifier,
        providers=providers,
        tools=tools,
        engine=chat_engine,
        runs=manager,
    )


async def close_services(services: Services) -> None:
    await services.runs.aclose()
    await services.runs.hub.aclose()
    await services.providers.aclose()
    await services.store.sessions.kw["bind"].dispose()


def create_app(
    settings: Settings | None = None,
    *,
    providers: ProviderRegistry | None = None,
    tools: ToolRegistry | None = None,
) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = await build_services(settings, providers=providers, tools=tools)
        await services.runs.recover()
        app.state.services = services
        try:
            yield
        finally:
            await close_services(services)

    app = FastAPI(
        title="parley",
        version=__version__,
        description="A self-hosted AI chat backend.",
        lifespan=lifespan,
    )
    errors.install(app)
    for module in (health, conversations, chat, runs):
        app.include_router(module.router)
    if dev.enabled(settings):
        app.include_router(dev.router)
    _mount_web(app)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["X-Run-Id", "X-Chat-Session-Id", "X-Request-Id", "X-Error-Code"],
        )
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestId)
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
