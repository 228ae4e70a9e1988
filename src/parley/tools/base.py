"""The tool seam: what the engine needs from a tool, wherever it comes from (MCP or built-in)."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from parley.providers.base import ToolSpec

ElicitCallback = Callable[[str, dict[str, Any]], Awaitable[tuple[str, dict[str, Any] | None]]]
ProgressCallback = Callable[[str, float | None, float | None], Awaitable[None]]
UsageCallback = Callable[[int, int], None]


async def _no_elicit(message: str, schema: dict[str, Any]) -> tuple[str, dict[str, Any] | None]:
    return "decline", None


async def _no_progress(message: str, progress: float | None, total: float | None) -> None:
    return None


def _no_usage(prompt_tokens: int, completion_tokens: int) -> None:
    return None


@dataclass
class ToolContext:
    """What a tool learns about the call. The user id comes from the run, never from the model.

    ``user_id`` is who the call acts for: the person who asked for the turn. ``owner_id`` is
    the user the conversation's rows are kept under when it is not theirs (a member's turn in
    a project's conversation): what a tool that writes to the store (a subagent) writes under.
    ``add_usage`` lets a tool that calls a model itself (a subagent) count its tokens in the
    run's usage; ``message_id`` is the assistant message that made the call.
    """

    user_id: str
    run_id: str
    conversation_id: str
    tool_call_id: str
    elicit: ElicitCallback = _no_elicit
    progress: ProgressCallback = _no_progress
    message_id: str = ""
    add_usage: UsageCallback = _no_usage
    owner_id: str = ""

    @property
    def owner(self) -> str:
        """The user the conversation's rows are kept under."""
        return self.owner_id or self.user_id


@dataclass
class ToolOutput:
    """A tool's answer: JSON-able content for the model, or an error it should see."""

    content: Any
    is_error: bool = False


@dataclass
class Tool(ABC):
    """One callable tool, described by a JSON schema.

    ``destructive`` tools (MCP's ``destructiveHint: true``) need approval under the default
    policy, as do tools configured with ``requires_approval``. ``hidden`` tools (a profile's
    subagents) are offered only where asked for by exact name, never through a wildcard pattern.
    """

    name: str
    description: str = ""
    input_schema: dict[str, Any] = field(default_factory=lambda: {"type": "object"})
    read_only: bool = False
    server: str | None = None
    requires_approval: bool = False
    hidden: bool = False
    destructive: bool = False

    @abstractmethod
    async def call(self, arguments: dict[str, Any], context: ToolContext) -> ToolOutput:
        """Run the tool. Raise only for failures the model should see as tool errors."""

    def spec(self) -> ToolSpec:
        """How the model sees the tool: built once, not at every model step of every run (it
        is held for as long as the step streams). Built again if the name, the description or
        the schema object changes."""
        cached: tuple[str, str, dict[str, Any], ToolSpec] | None = self.__dict__.get("_model_spec")
        if (
            cached is None
            or cached[:2] != (self.name, self.description)
            or (cached[2] is not self.input_schema)
        ):
            spec = ToolSpec(
                name=self.name, description=self.description, parameters=self.input_schema
            )
            cached = (self.name, self.description, self.input_schema, spec)
            self.__dict__["_model_spec"] = cached
        return cached[3]


class FunctionTool(Tool):
    """A tool backed by an async Python function (built-ins, tests).

    The function returns JSON-able content, or a :class:`ToolOutput` to report an error.
    """

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
        destructive: bool = False,
    ) -> None:
        super().__init__(
            name=name,
            description=description,
            input_schema=input_schema or {"type": "object"},
            read_only=read_only,
            server=server,
            requires_approval=requires_approval,
            destructive=destructive,
        )
        self._func = func

    async def call(self, arguments: dict[str, Any], context: ToolContext) -> ToolOutput:
        result = await self._func(arguments, context)
        return result if isinstance(result, ToolOutput) else ToolOutput(content=result)


class Deadline:
    """A time limit that stops counting while a person is being asked something.

    ``async with deadline.running():`` raises ``TimeoutError`` after ``seconds``; inside it,
    ``async with deadline.paused():`` suspends the clock (an elicitation waits for a human,
    who has a timeout of their own).
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._timeout: asyncio.Timeout | None = None

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        async with asyncio.timeout(self.seconds) as timeout:
            self._timeout = timeout
            try:
                yield
            finally:
                self._timeout = None

    @asynccontextmanager
    async def paused(self) -> AsyncIterator[None]:
        timeout = self._timeout
        when = timeout.when() if timeout is not None else None
        if timeout is None or when is None:
            yield
            return
        loop = asyncio.get_running_loop()
        left = max(0.0, when - loop.time())
        timeout.reschedule(None)
        try:
            yield
        finally:
            if not timeout.expired():
                timeout.reschedule(loop.time() + left)
