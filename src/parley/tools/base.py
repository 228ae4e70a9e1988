"""The tool seam: what the engine needs from a tool, wherever it comes from (MCP or built-in)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

ElicitCallback = Callable[[str, dict[str, Any]], Awaitable[tuple[str, dict[str, Any] | None]]]
ProgressCallback = Callable[[str, float | None, float | None], Awaitable[None]]


async def _no_elicit(message: str, schema: dict[str, Any]) -> tuple[str, dict[str, Any] | None]:
    return "decline", None


async def _no_progress(message: str, progress: float | None, total: float | None) -> None:
    return None


@dataclass
class ToolContext:
    """What a tool learns about the call. The user id comes from the run, never from the model."""

    user_id: str
    run_id: str
    conversation_id: str
    tool_call_id: str
    elicit: ElicitCallback = _no_elicit
    progress: ProgressCallback = _no_progress


@dataclass
class ToolOutput:
    """A tool's answer: JSON-able content for the model, or an error it should see."""

    content: Any
    is_error: bool = False


@dataclass
class Tool(ABC):
    """One callable tool, described by a JSON schema."""

    name: str
    description: str = ""
    input_schema: dict[str, Any] = field(default_factory=lambda: {"type": "object"})
    read_only: bool = False
    server: str | None = None
    requires_approval: bool = False

    @abstractmethod
    async def call(self, arguments: dict[str, Any], context: ToolContext) -> ToolOutput:
        """Run the tool. Raise only for failures the model should see as tool errors."""


class FunctionTool(Tool):
    """A tool backed by an async Python function (built-ins, tests)."""

    def __init__(
        self,
        name: str,
        func: Callable[[dict[str, Any], ToolContext], Awaitable[Any]],
        *,
        description: str = "",
        input_schema: dict[str, Any] | None = None,
        read_only: bool = False,
        server: str | None = None,
        requires_approval: bool = False,
    ) -> None:
        super().__init__(
            name=name,
            description=description,
            input_schema=input_schema or {"type": "object"},
            read_only=read_only,
            server=server,
            requires_approval=requires_approval,
        )
        self._func = func

    async def call(self, arguments: dict[str, Any], context: ToolContext) -> ToolOutput:
        return ToolOutput(content=await self._func(arguments, context))
