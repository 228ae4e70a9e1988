"""An MCP server over streamable HTTP (the ``mcp`` SDK's ``MCPServer``) on a real socket, whose
one tool, ``whoami``, answers with the ``Authorization`` header its request carried: the test
double of a server that acts for whoever's credential it gets.

It lists its tools to anyone, records each call's MCP session id and header, and refuses any
request whose header is in :attr:`WhoamiServer.refused` with a 401.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import uvicorn
from mcp.server.mcpserver import Context, MCPServer
from starlette.types import ASGIApp, Receive, Scope, Send


@dataclass(frozen=True)
class Seen:
    """One ``whoami`` call: the MCP session it came on, and the headers it carried."""

    session: str | None
    authorization: str | None
    headers: dict[str, str]


@dataclass
class WhoamiServer:
    url: str = ""
    calls: list[Seen] = field(default_factory=list)
    refused: set[str] = field(default_factory=lambda: {"Bearer revoked"})

    def app(self) -> ASGIApp:
        server = MCPServer("whoami", log_level="WARNING")

        @server.tool(description="Who the server thinks is calling: the Authorization it got.")
        def whoami(ctx: Context) -> str:
            headers = dict(ctx.headers or {})
            seen = Seen(headers.get("mcp-session-id"), headers.get("authorization"), headers)
            self.calls.append(seen)
            return seen.authorization or "(no Authorization header)"

        return self._refusing(server.streamable_http_app(host="127.0.0.1"))

    def _refusing(self, app: ASGIApp) -> ASGIApp:
        async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
            headers = dict(scope.get("headers") or [])
            if scope["type"] == "http" and headers.get(b"authorization", b"").decode() in (
                self.refused
            ):
                await send({"type": "http.response.start", "status": 401, "headers": []})
                await send({"type": "http.response.body", "body": b"refused"})
                return
            await app(scope, receive, send)

        return guarded

    def sessions_of(self, authorization: str) -> set[str | None]:
        return {c.session for c in self.calls if c.authorization == authorization}


@asynccontextmanager
async def serve_whoami() -> AsyncIterator[WhoamiServer]:
    """The server on a free loopback port, in the caller's event loop."""
    whoami = WhoamiServer()
    listener = socket.create_server(("127.0.0.1", 0))  # connections queue until it serves
    whoami.url = f"http://127.0.0.1:{listener.getsockname()[1]}/mcp"
    config = uvicorn.Config(whoami.app(), log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[listener]))
    try:
        yield whoami
    finally:
        server.should_exit = True
        await task
        listener.close()
