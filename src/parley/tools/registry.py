"""One registry of tools from every source; profiles and requests choose what a model sees."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence

from parley.tools.base import Tool

SEPARATOR = "__"
DELEGATE_PREFIX = "agent__"


def delegate_tool_name(profile: str) -> str:
    """The tool through which a profile's agent hands a task to profile ``profile``."""
    return f"{DELEGATE_PREFIX}{profile}"


def qualified_name(tool: Tool) -> str:
    """``server__tool``: the name a pattern such as ``todo__*`` matches, clash or not."""
    if tool.server is None or tool.name.startswith(tool.server + SEPARATOR):
        return tool.name
    return f"{tool.server}{SEPARATOR}{tool.name}"


class ToolRegistry:
    """Tools by name. Sources register here the way a plugin would (``register``)."""

    def __init__(self) -> None:
        self._tools: dict[str, Tool] = {}

    def register(self, tool: Tool) -> None:
        self._tools[tool.name] = tool

    def unregister(self, name: str) -> None:
        self._tools.pop(name, None)

    def unregister_server(self, server: str) -> None:
        for name in [n for n, t in self._tools.items() if t.server == server]:
            del self._tools[name]

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    def all(self) -> list[Tool]:
        return list(self._tools.values())

    def servers(self) -> list[str]:
        return sorted({t.server for t in self._tools.values() if t.server})

    def select(
        self, patterns: Sequence[str], *, servers: Iterable[str] | None = None
    ) -> list[Tool]:
        """Tools whose name (or ``server__name``) matches one of ``patterns`` (``*``,
        ``todo__*``, ``add_task``), limited to ``servers`` when given. A hidden tool matches
        only its exact name."""
        allowed = set(servers) if servers is not None else None
        chosen = []
        for tool in self._tools.values():
            if allowed is not None and tool.server not in allowed:
                continue
            if _matches(tool, patterns):
                chosen.append(tool)
        return chosen

    async def list_for(self, user_id: str) -> None:
        """Let sources that list their tools only through a user's own session (an OAuth MCP
        server with no shared credential) list them through ``user_id``'s; a plain registry
        has none."""

    async def aclose(self) -> None:
        """Release what the sources hold (MCP sessions); a plain registry holds nothing."""


def _matches(tool: Tool, patterns: Sequence[str]) -> bool:
    if tool.hidden:
        return tool.name in patterns
    names = {tool.name, qualified_name(tool)}
    return any(fnmatch.fnmatchcase(name, p) for name in names for p in patterns)
