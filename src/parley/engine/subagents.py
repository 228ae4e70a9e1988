"""Subagents: a profile's agent runs a delegated task inside the tool call of its parent.

The engine runs the task on a fresh, in-memory history holding only the task, through its two
hooks: :class:`Unrecorded` as its ``record`` (nothing of the subagent's reply is stored, and a
cancel of the parent's call stops it with that call) and a :class:`ToolRunner` whose ``elicit``
sends its tools' questions through the parent's call. Its tool calls are audited like any other,
then moved under the parent's message (so their side effects count there); its text and tool
activity reach the person as progress of the parent's call; its token usage is added to the
parent run's. Approvals it cannot ask for are dropped and the parent is told.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from parley.chat import events as ev
from parley.chat.ids import new_id
from parley.chat.messages import Part
from parley.config import ProfileConfig
from parley.engine.record import Checkpoint
from parley.engine.requests import PreparedTurn
from parley.engine.tools import ToolRunner
from parley.engine.toolset import ToolSet
from parley.engine.turn import Engine
from parley.errors import ErrorInfo
from parley.store.values import ApprovalAsk, Message
from parley.tools.base import ToolContext, ToolOutput


class Unrecorded:
    """A :class:`~parley.engine.record.TurnRecord` that keeps nothing, and hands a cancel on."""

    ends_cancelled = False

    def begin(self, turn: PreparedTurn) -> Checkpoint:
        return _no_checkpoint

    async def suspend(self, turn: PreparedTurn, parts: list[Part]) -> None:
        return None

    async def finish(
        self, turn: PreparedTurn, parts: list[Part], status: str, error: ErrorInfo | None
    ) -> None:
        return None


def _no_checkpoint(builder: object) -> None:
    return None


@dataclass
class Subagent:
    """One delegated task of the agent ``name`` (its ``profile``), run to its end."""

    engine: Engine
    name: str
    profile: ProfileConfig
    parent: ToolContext
    text: list[str] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)

    async def run(self, task: str) -> ToolOutput:
        parent = self.engine
        tools = ToolRunner(
            parent.settings, parent.store, parent.tools.registry, elicit=self.parent.elicit
        )
        engine = Engine(
            settings=parent.settings,
            store=parent.store,
            providers=parent.providers,
            tools=tools,
            record=Unrecorded(),
        )
        turn = self._turn(tools, task)
        outcome: ToolOutput | None = None
        try:
            async for event in engine.run(turn):
                outcome = await self._on(event) or outcome
        finally:
            self.parent.add_usage(turn.usage.prompt_tokens, turn.usage.completion_tokens)
            await self._settle(turn)
        return outcome or ToolOutput("the agent stopped without an answer", is_error=True)

    def _turn(self, tools: ToolRunner, task: str) -> PreparedTurn:
        model = self.engine.providers.resolve(self.profile.model)
        chosen = tools.toolset(self.profile, None, False, self.parent.user_id)
        owner = self.parent.owner
        return PreparedTurn(
            run_id=new_id("run"),
            user_id=owner,
            actor=self.parent.user_id if self.parent.user_id != owner else None,
            conversation_id=self.parent.conversation_id,
            user_message_id=None,
            message_id=new_id("msg"),
            model=model,
            temperature=None,
            max_tokens=None,
            system=self.profile.system_prompt,
            history=[Message(role="user", parts=[{"type": "text", "text": task}])],
            tools=chosen if model.capabilities.tools else ToolSet(),
            max_steps=self.profile.max_steps,
        )

    async def _on(self, event: ev.EngineEvent) -> ToolOutput | None:
        name = self.name
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
        store, user = self.engine.store, turn.user_id
        for pending in await store.pending_for_run(user, turn.run_id):
            await store.answer_pending(user, pending.id, "cancelled", {"approved": False})
            ask = pending.payload
            if isinstance(ask, ApprovalAsk) and ask.audit_id:
                await store.update_tool_call(
                    user, ask.audit_id, status="denied", error="an agent cannot ask for approval"
                )
        await store.move_run_tool_calls(
            user, turn.run_id, self.parent.message_id or turn.message_id
        )
