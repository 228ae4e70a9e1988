"""One registry of tools from every source; profiles and requests choose what a model sees."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence

from parley.tools.base import Tool


class ToolRegistry:
    """Tools by name. Sources register here the way a plugin would (``register``)."""

    def __init__(self) -> None:
        self._tools: dict[str, Tool] = {}

    def register(self, tool: Tool) -> None:
        self._tools[tool.name] = tool

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
        """Tools whose name matches one of ``patterns`` (``*``, ``todo__*``, ``add_task``),
        limited to ``servers`` when given."""
        allowed = set(servers) if servers is not None else None
        chosen = []
        for tool in self._tools.values():
            if allowed is not None and tool.server not in allowed:
                continue
            if any(fnmatch.fnmatchcase(tool.name, p) for p in patterns):
                chosen.append(tool)
        return chosen
