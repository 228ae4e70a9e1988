"""The tools a running parley offers: the built-in todo tools, MCP servers, subagents.

:func:`build_tools` registers them the way a plugin would and starts the MCP sessions;
:func:`register_delegates` adds the subagent tools once the engine exists.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence

import httpx2
import structlog

from parley.config import McpServerConfig, Settings
from parley.errors import ConfigError
from parley.store import Store
from parley.tools.base import Tool
from parley.tools.delegate import register_delegates
from parley.tools.mcp import McpServer, McpTool
from parley.tools.mcp_oauth_flows import handshake
from parley.tools.mcp_users import CredentialSource
from parley.tools.mcp_values import tool_name
from parley.tools.registry import SEPARATOR, ToolRegistry
from parley.tools.todo import SERVER_NAME as TODO_SERVER
from parley.tools.todo import todo_tools

__all__ = ["ToolManager", "build_tools", "register_delegates"]

log = structlog.get_logger("parley.tools")


class ToolManager(ToolRegistry):
    """The registry that owns its sources: built-ins stay, MCP tools follow their servers.

    A tool keeps its own name unless another source offers the same one; then the MCP
    tools of that name become ``server__tool`` (built-ins keep theirs).
    """

    def __init__(self) -> None:
        super().__init__()
        self.builtin: list[Tool] = []
        self.mcp: dict[str, McpServer] = {}

    def add_builtin(self, tools: Sequence[Tool]) -> None:
        for tool in tools:
            self.builtin.append(tool)
            self.register(tool)

    async def start_mcp(
        self, configs: Sequence[McpServerConfig], credentials: CredentialSource | None = None
    ) -> None:
        """Start every enabled server; a server that is down now is retried in the background.
        A per-user server's calls take each user's credential from ``credentials``."""
        names = [c.name for c in configs]
        clashes = sorted({n for n in names if names.count(n) > 1})
        if clashes:
            raise ConfigError(f"MCP server names must be unique: {', '.join(clashes)}")
        if TODO_SERVER in names:
            raise ConfigError(f"the MCP server name {TODO_SERVER!r} belongs to the built-in tools")
        for config in configs:
            if config.enabled:
                self.mcp[config.name] = McpServer(
                    config, on_change=self._rebuild, credentials=credentials
                )
        await asyncio.gather(*(server.start() for server in self.mcp.values()))

    def _rebuild(self) -> None:
        for tool in self.all():
            if isinstance(tool, McpTool):
                self.unregister(tool.name)
        offered = Counter(t.name for t in self.builtin)
        offered.update(tool_name(s.name) for server in self.mcp.values() for s in server.specs)
        for server in self.mcp.values():
            for spec in server.specs:
                name = tool_name(spec.name)
                if offered[name] > 1:
                    name = tool_name(f"{server.name}{SEPARATOR}{spec.name}")
                self.register(McpTool(server, spec, name=name))

    async def list_for(self, user_id: str) -> None:
        """An OAuth server with no shared session has no tools listed after a restart until a
        session opens: the first turn of a connected user opens theirs (it serves their calls
        after), so their run is offered the server's tools. A user not connected opens none."""
        unlisted = [s for s in self.mcp.values() if s.lists_through_users and not s.specs]
        await asyncio.gather(*(server.list_as(user_id) for server in unlisted))

    async def connect_as(self, config: McpServerConfig, user: str, auth: httpx2.Auth) -> None:
        """A handshake with server ``config`` as ``user`` through ``auth`` (an OAuth flow)."""
        server = self.mcp.get(config.name)
        if server is None:
            await handshake(config, user, auth)
        else:
            await server.connect_as(user, auth)

    async def aclose(self) -> None:
        await asyncio.gather(*(server.aclose() for server in self.mcp.values()))


async def build_tools(
    settings: Settings, store: Store, credentials: CredentialSource | None = None
) -> ToolManager:
    """The built-in todo tools plus every ``[[mcp_servers]]`` entry, connected."""
    manager = ToolManager()
    manager.add_builtin(todo_tools(store))
    await manager.start_mcp(settings.mcp_servers, credentials)
    return manager
