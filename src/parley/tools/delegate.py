"""Profiles as subagents: ``delegate_to = ["NAME"]`` offers profile NAME as a tool.

Calling the tool runs the engine with that profile on a fresh, in-memory history holding only
the task. Nothing of the subagent's conversation is stored; its tool calls are audited like any
other (under the parent's message, so their side effects count there), its text and tool
activity reach the person as progress of the parent's tool call, questions its tools ask go
through the parent call, and its token usage is added to the parent run's.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from parley.chat import events as ev
from parley.chat.ids import new_id
from parley.chat.messages import PartsBuilder
from parley.config import ProfileConfig, Settings
from parley.engine.tools import ToolRunner, ToolSet
from parley.engine.turn import BUILTIN_PROFILES, Engine, PreparedTurn
from parley.errors import ConfigError
from parley.store.values import Message
from parley.tools.base import Deadline, Tool, ToolContext, ToolOutput
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
            return await Subagent(self, context).run(str(arguments["task"]))
        finally:
            _depth.reset(token)


class _SubEngine(Engine):
    """The engine with nothing stored: the subagent's history lives in memory."""

    async def _finish(
        self,
        turn: PreparedTurn,
        builder: PartsBuilder,
        status: str,
        error: dict[str, str] | None = None,
    ) -> None:
        return None

    async def _suspend(self, turn: PreparedTurn, builder: PartsBuilder) -> None:
        return None

    async def _on_cancel(
        self, turn: PreparedTurn, builder: PartsBuilder
    ) -> AsyncIterator[ev.EngineEvent]:
        """A subagent stops with its parent's call: hand the cancellation back up."""
        task = asyncio.current_task()
        if task is not None:
            task.cancel()
        await asyncio.sleep(0)
        yield ev.RunFinished(message_id=turn.message_id, finish_reason="cancelled")


class _SubToolRunner(ToolRunner):
    """The subagent's tools ask their questions through the parent's tool call."""

    def __init__(self, runner: ToolRunner, parent: ToolContext) -> None:
        super().__init__(runner.settings, runner.store, runner.registry)
        self.parent = parent

    def _context(
        self,
        turn: PreparedTurn,
        call: ev.ToolCallReady,
        tool: Tool,
        queue: asyncio.Queue[object],
        deadline: Deadline | None = None,
    ) -> ToolContext:
        context = super()._context(turn, call, tool, queue, deadline)
        return dataclasses.replace(context, elicit=self.parent.elicit)


@dataclass
class Subagent:
    """One delegated task, run to its end."""

    tool: DelegateTool
    parent: ToolContext
    text: list[str] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)

    async def run(self, task: str) -> ToolOutput:
        engine = self.tool.engine
        runner = _SubToolRunner(engine.tools, self.parent)
        sub = _SubEngine(
            settings=engine.settings, store=engine.store, providers=engine.providers, tools=runner
        )
        turn = self._turn(runner, task)
        outcome: ToolOutput | None = None
        try:
            async for event in sub.run(turn):
                outcome = await self._on(event) or outcome
        finally:
            self.parent.add_usage(turn.usage.prompt_tokens, turn.usage.completion_tokens)
            await self._settle(turn)
        return outcome or ToolOutput("the agent stopped without an answer", is_error=True)

    def _turn(self, runner: ToolRunner, task: str) -> PreparedTurn:
        engine, profile = self.tool.engine, self.tool.profile
        model = engine.providers.resolve(profile.model)
        tools = runner.toolset(profile, None, False, self.parent.user_id)
        return PreparedTurn(
            run_id=new_id("run"),
            user_id=self.parent.user_id,
            conversation_id=self.parent.conversation_id,
            user_message_id=None,
            message_id=new_id("msg"),
            model=model,
            temperature=None,
            max_tokens=None,
            system=profile.system_prompt,
            history=[Message(role="user", parts=[{"type": "text", "text": task}])],
            tools=tools if model.capabilities.tools else ToolSet(),
            max_steps=profile.max_steps,
        )

    async def _on(self, event: ev.EngineEvent) -> ToolOutput | None:
        name = self.tool.profile_name
        if isinstance(event, ev.TextDelta):
            self.text.append(event.content)
            await self.parent.progress(event.content, None, None)
        elif isinstance(event, ev.ToolCallReady):
            self.text.clear()
            await self.parent.progress(f"[{name}] calls {event.tool_name}", None, None)
        elif isinstance(event, ev.ToolResult | ev.ToolFailed):
            state = "failed" if isinstance(event, ev.ToolFailed) else "done"
            await self.parent.progress(f"[{name}] {event.tool_name} {state}", None, None)
        elif isinstance(event, ev.ApprovalRequested):
            self.waiting.append(event.tool_name)
        elif isinstance(event, ev.RunSuspended):
            tools = ", ".join(self.waiting)
            return ToolOutput(
                f"the {name} agent needed approval for {tools}; an agent cannot ask for "
                "approval. Ask the user, then call the tool yourself.",
                is_error=True,
            )
        elif isinstance(event, ev.RunFailed):
            return ToolOutput(f"the {name} agent failed: {event.message}", is_error=True)
        elif isinstance(event, ev.RunFinished):
            return ToolOutput("".join(self.text).strip() or f"the {name} agent finished")
        return None

    async def _settle(self, turn: PreparedTurn) -> None:
        """Audit rows go under the parent's message; approvals it could not ask are dropped."""
        store, user = self.tool.engine.store, turn.user_id
        for pending in await store.pending_for_run(user, turn.run_id):
            await store.answer_pending(user, pending.id, "cancelled", {"approved": False})
            audit_id = pending.payload.get("audit_id")
            if audit_id:
                await store.update_tool_call(
                    user, audit_id, status="denied", error="an agent cannot ask for approval"
                )
        await store.move_run_tool_calls(
            user, turn.run_id, self.parent.message_id or turn.message_id
        )
