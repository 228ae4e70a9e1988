"""Profiles as subagents: ``delegate_to = ["NAME"]`` offers profile NAME as a tool.

Calling the tool runs the engine with that profile on the task alone, as a
:class:`~parley.engine.subagents.Subagent` (what is stored, what the person sees, where its
questions and usage go are told there), at most :data:`MAX_DEPTH` agents deep.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

from parley.config import ProfileConfig, Settings
from parley.engine.profiles import BUILTIN_PROFILES
from parley.engine.subagents import Subagent
from parley.engine.turn import Engine
from parley.errors import ConfigError
from parley.tools.base import Tool, ToolContext, ToolOutput
from parley.tools.registry import ToolRegistry, delegate_tool_name

MAX_DEPTH = 3
_depth: ContextVar[int] = ContextVar("parley_delegate_depth", default=0)
TASK_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "task": {
            "type": "string",
            "minLength": 1,
            "description": "The whole task, self-contained: the agent sees nothing else.",
        }
    },
    "required": ["task"],
    "additionalProperties": False,
}


def register_delegates(engine: Engine, registry: ToolRegistry, settings: Settings) -> None:
    """Register one hidden tool per profile some profile delegates to."""
    profiles = {**BUILTIN_PROFILES, **settings.profiles}
    for name in sorted({n for p in profiles.values() for n in p.delegate_to}):
        if name not in profiles:
            raise ConfigError(f"delegate_to names the unknown profile {name!r}")
        registry.register(DelegateTool(engine, name, profiles[name]))


class DelegateTool(Tool):
    """Hands a task to another profile and answers with that agent's final text."""

    def __init__(self, engine: Engine, profile_name: str, profile: ProfileConfig) -> None:
        about = f" ({profile.description})" if profile.description else ""
        super().__init__(
            name=delegate_tool_name(profile_name),
            description=(
                f"Hand a task to the {profile_name!r} agent{about}. It works on its own with "
                "its tools and answers with its result."
            ),
            input_schema=TASK_SCHEMA,
            read_only=True,
            hidden=True,
        )
        self.engine = engine
        self.profile_name = profile_name
        self.profile = profile

    async def call(self, arguments: dict[str, Any], context: ToolContext) -> ToolOutput:
        depth = _depth.get()
        if depth >= MAX_DEPTH:
            return ToolOutput(f"agents may delegate at most {MAX_DEPTH} levels deep", True)
        token = _depth.set(depth + 1)
        try:
            agent = Subagent(self.engine, self.profile_name, self.profile, context)
            return await agent.run(str(arguments["task"]))
        finally:
            _depth.reset(token)
