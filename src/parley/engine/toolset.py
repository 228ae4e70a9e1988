"""The tools one run may call: what :class:`~parley.engine.tools.ToolRunner` chooses and runs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from parley.chat import events as ev
from parley.providers.base import ToolSpec
from parley.store.values import ToolChoice
from parley.tools.base import Tool


@dataclass
class ToolSet:
    """The tools one run may call, and its approval policy."""

    tools: dict[str, Tool] = field(default_factory=dict)
    approve_all: bool = False
    patterns: list[str] = field(default_factory=list)
    servers: list[str] | None = None
    external: dict[str, ToolSpec] = field(default_factory=dict)

    def specs(self) -> list[ToolSpec]:
        own = [t.spec() for t in self.tools.values()]
        return own + [s for name, s in self.external.items() if name not in self.tools]

    def hands_back(self, calls: Sequence[ev.ToolCallReady]) -> bool:
        """Whether a step called a tool the client runs itself (``TurnRequest.external_tools``):
        then the run ends with ``tool_calls`` and the client gets the calls."""
        return any(c.tool_name in self.external and c.tool_name not in self.tools for c in calls)

    def state(self) -> ToolChoice:
        return ToolChoice(
            patterns=self.patterns, servers=self.servers, approve_all=self.approve_all
        )
