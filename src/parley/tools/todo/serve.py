"""``parley mcp todo``: the todo tools alone, for other MCP clients, over stdio or HTTP.

Over stdio the server acts for ``--user``. Over streamable HTTP every request needs the same
bearer JWT parley's API takes, and the server acts for the token's ``sub``.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send

from parley.auth import TokenVerifier
from parley.config import Settings, ensure_jwt_secret
from parley.errors import Unauthenticated
from parley.logging import configure
from parley.serving import AnnouncingServer, listen, url_of
from parley.store import Store, migrate
from parley.store.db import create_engine, session_factory
from parley.tools.todo.server import build_server, current_user

TRANSPORTS = ("stdio", "http")
MCP_PATH = "/mcp"


def serve_todo(
    settings: Settings,
    *,
    transport: str = "stdio",
    port: int = 8765,
    user: str | None = None,
    on_started: Callable[[str], None] = lambda url: None,
) -> None:
    """Serve until interrupted. Logs go to stderr: over stdio, stdout carries the protocol.

    Over HTTP the port is bound first (:class:`~parley.errors.PortInUse` if it is taken), and
    ``on_started`` gets the MCP endpoint's URL once it accepts connections.
    """
    if transport not in TRANSPORTS:
        raise SystemExit(f"parley mcp todo: --transport must be one of {', '.join(TRANSPORTS)}")
    if transport == "stdio" and not user:
        raise SystemExit("parley mcp todo: --user is required with --transport stdio")
    configure(json_logs=settings.log_json, level="WARNING")
    listener = listen(settings.host, port) if transport == "http" else None
    if settings.auto_migrate:
        migrate.upgrade(settings.effective_database_url)
    if listener is None:
        assert user is not None
        asyncio.run(_serve_stdio(settings, user))
    else:
        asyncio.run(_serve_http(settings, listener, on_started))


@asynccontextmanager
async def open_store(settings: Settings) -> AsyncIterator[Store]:
    store = Store(session_factory(create_engine(settings.effective_database_url)))
    try:
        yield store
    finally:
        await store.close()


async def _serve_stdio(settings: Settings, user: str) -> None:
    async with open_store(settings) as store:
        await store.ensure_user(user)
        current_user.set(user)
        await build_server(store).run_stdio_async()


async def _serve_http(
    settings: Settings, listener: socket.socket, on_started: Callable[[str], None]
) -> None:
    url = url_of(settings.host, listener, MCP_PATH)
    async with open_store(settings) as store:
        config = uvicorn.Config(http_app(settings, store), log_level="warning")
        server = AnnouncingServer(config, lambda: on_started(url))
        await server.serve(sockets=[listener])


def verifier_for(settings: Settings) -> TokenVerifier:
    """The same verifier parley's API uses: the HS256 secret and/or the JWKS."""
    secret = (
        ensure_jwt_secret(settings) if settings.jwks_url is None or settings.jwt_secret else None
    )
    return TokenVerifier(
        secret=secret,
        jwks_url=settings.jwks_url,
        audience=settings.jwt_audience,
        issuer=settings.jwt_issuer,
    )


def http_app(settings: Settings, store: Store, *, path: str = MCP_PATH) -> ASGIApp:
    """The todo MCP server as an ASGI app (streamable HTTP at ``path``) behind bearer auth."""
    server = build_server(store)
    inner = server.streamable_http_app(streamable_http_path=path, host=settings.host)
    return BearerAuth(inner, verifier_for(settings), store)


class BearerAuth:
    """Every HTTP request needs a valid bearer JWT; the tools then act for its ``sub``."""

    def __init__(self, app: ASGIApp, verifier: TokenVerifier, store: Store) -> None:
        self.app = app
        self.verifier = verifier
        self.store = store

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            principal = await self.verifier.verify(_bearer(scope))
        except Unauthenticated as exc:
            await _unauthorized(send, exc.message)
            return
        await self.store.ensure_user(principal.user_id)
        token = current_user.set(principal.user_id)
        try:
            await self.app(scope, receive, send)
        finally:
            current_user.reset(token)


def _bearer(scope: Scope) -> str:
    headers: dict[bytes, bytes] = dict(scope.get("headers") or [])
    scheme, _, token = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("missing bearer token (Authorization: Bearer <JWT>)")
    return token.strip()


async def _unauthorized(send: Send, message: str) -> None:
    body: dict[str, Any] = {
        "success": False,
        "error": {"code": "ERR_UNAUTHENTICATED", "message": message},
    }
    raw = json.dumps(body).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"www-authenticate", b"Bearer"),
        (b"x-error-code", b"ERR_UNAUTHENTICATED"),
        (b"content-length", str(len(raw)).encode()),
    ]
    await send({"type": "http.response.start", "status": 401, "headers": headers})
    await send({"type": "http.response.body", "body": raw})
