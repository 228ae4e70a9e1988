"""``Engine.prepare`` + ``Engine.run``: one user message becomes a stream of engine events.

``prepare`` (:mod:`parley.engine.prepare`) validates the request and commits the user message,
the streaming assistant message and the run in one transaction, before any model is called.
``run`` is the tool loop: call the model (:mod:`parley.engine.step`), run the tools it asks for
(in parallel, :mod:`parley.engine.tools`), feed the results back, up to ``max_steps``. A tool
that needs approval suspends the run: its state is kept (:mod:`parley.engine.record`), the
generator ends without a terminal event, and :meth:`Engine.run` is called again with
``resume=True`` once the person answers.

Two hooks change what a run does beyond the loop, both constructor arguments: ``record``, where
the reply is kept (the store by default), and the :class:`ToolRunner` given as ``tools`` (whose
``elicit`` says where tools' questions go). Subagents use both (:mod:`parley.engine.subagents`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable

import structlog

from parley.chat import events as ev
from parley.chat.messages import Part, PartsBuilder
from parley.config import ProfileConfig, Settings
from parley.engine.budget import Budget
from parley.engine.context import ContextWindow
from parley.engine.history import assistant_messages
from parley.engine.prepare import TurnPreparer
from parley.engine.profiles import find_profile
from parley.engine.record import StoredTurns, TurnRecord
from parley.engine.requests import PreparedTurn, TurnRequest
from parley.engine.step import StepAside, model_step
from parley.engine.summaries import Summaries
from parley.engine.tools import ToolRunner
from parley.errors import ErrorInfo, ParleyError, RunTimeout
from parley.limits import Limiter
from parley.providers.base import ChatMessage
from parley.providers.registry import ProviderRegistry
from parley.store import Store
from parley.store.values import Caller, Run

log = structlog.get_logger("parley.engine")
INTERNAL: ErrorInfo = {"code": "ERR_INTERNAL", "message": "the run failed unexpectedly"}


class Engine:
    def __init__(
        self,
        *,
        settings: Settings,
        store: Store,
        providers: ProviderRegistry,
        tools: ToolRunner,
        limiter: Limiter | None = None,
        record: TurnRecord | None = None,
        context: ContextWindow | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.providers = providers
        self.tools = tools
        self.budget = Budget(settings, limiter)
        self.record = record or StoredTurns(store, settings.checkpoint_interval)
        # long conversations: what the model sees; the summaries and titles after a stored reply
        self.context = context or ContextWindow(settings, store)
        self.summaries = (
            Summaries(settings, store, providers, self.context, self.budget) if not record else None
        )
        self.preparer = TurnPreparer(settings, store, providers, tools, self.budget, self.context)

    # prepare ----------------------------------------------------------------------------

    def check(self, request: TurnRequest, *, earlier: Iterable[list[Part]] = ()) -> None:
        """Hold the request's new user message, and ``earlier`` user messages a client sends
        with it (the OpenAI door's history), to the limits every door shares; nothing is read
        or written. :meth:`prepare` calls it first: a door that writes before it starts a turn
        (a new conversation, a client's history) calls it before that write."""
        self.preparer.check(request, earlier=earlier)

    def profile(self, name: str | None) -> ProfileConfig | None:
        """The profile ``name``; an unknown one is a :class:`ValidationFailed`."""
        return find_profile(self.settings, name)

    async def prepare(
        self,
        caller: Caller,
        conversation_id: str,
        request: TurnRequest,
        *,
        owner: str | None = None,
    ) -> PreparedTurn:
        """Check ``request`` (and that ``caller`` may write in the conversation) and commit its
        turn; nothing is asked of a model yet."""
        return await self.preparer.prepare(caller, conversation_id, request, owner=owner)

    async def reopen(self, user_id: str, run: Run) -> PreparedTurn:
        """The turn of a suspended ``run``, to :meth:`run` with ``resume=True``."""
        return await self.preparer.reopen(user_id, run)

    # the run manager's questions --------------------------------------------------------

    def answer_elicitation(self, elicitation_id: str, answer: dict[str, object]) -> bool:
        """Hand a person's answer to the tool waiting for it in this process."""
        return self.tools.waiters.resolve(elicitation_id, answer)

    def server_of(self, tool_name: str) -> str | None:
        """The MCP server a registered tool belongs to (None for parley's own and unknown)."""
        tool = self.tools.registry.get(tool_name)
        return tool.server if tool is not None else None

    # run ---------------------------------------------------------------------------------

    async def run(
        self, turn: PreparedTurn, *, resume: bool = False
    ) -> AsyncIterator[ev.EngineEvent]:
        """The tool loop. Ends with ``RunFinished``/``RunFailed``, or silently when suspended."""
        builder = PartsBuilder(turn.parts)
        checkpoint = self.record.begin(turn)
        aside = StepAside()
        try:
            if not resume:
                yield _started(turn)
            else:
                async for event in self.tools.resume(turn, builder):
                    builder.apply(event)
                    yield event
            finish: str = "stop"
            first_step = not resume
            while turn.step < turn.max_steps:
                turn.step += 1
                if not first_step and turn.reservation is not None:
                    await self.budget.reserve_step(turn, self._messages(turn, builder))
                first_step = False
                builder.start_step()
                calls: list[ev.ToolCallReady] = []
                messages = self._messages(turn, builder)
                async for event in model_step(turn, messages, self.budget, calls):
                    if isinstance(event, ev.Usage):
                        self.context.calibrate(turn, event.prompt_tokens)
                    builder.apply(event)
                    yield event
                    checkpoint(builder)
                    if aside.due(event):
                        await aside.give()
                if not calls:
                    break
                if turn.tools.hands_back(calls):
                    finish = "tool_calls"
                    break
                waiting: list[str] = []
                async for event in self.tools.execute(turn, builder, calls):
                    if isinstance(event, ev.ApprovalRequested):
                        waiting.append(event.tool_call_id)
                    builder.apply(event)
                    yield event
                if waiting:
                    await self._suspend(turn, builder)
                    yield ev.RunSuspended(message_id=turn.message_id, waiting_for=waiting)
                    return
            else:
                finish = "max_steps"
                limited = ev.StepLimitReached(max_steps=turn.max_steps)
                builder.apply(limited)
                yield limited
            await self._finish(turn, builder, "complete")
            yield _finished(turn, finish)
        except asyncio.CancelledError:
            if not self.record.ends_cancelled:
                raise
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            yield await self._on_cancel(turn, builder)
        except ParleyError as exc:
            yield await self._fail(turn, builder, exc)
        except Exception:
            log.exception("run_crashed", run_id=turn.run_id)
            with contextlib.suppress(Exception):
                await self._finish(turn, builder, "error", INTERNAL)
            yield ev.RunFailed(message_id=turn.message_id, status=500, **INTERNAL)

    async def _on_cancel(self, turn: PreparedTurn, builder: PartsBuilder) -> ev.EngineEvent:
        if turn.cancel_reason == "timeout":
            return await self._fail(turn, builder, RunTimeout("the run took longer than allowed"))
        status = "interrupted" if turn.cancel_reason == "shutdown" else "cancelled"
        await self._finish(turn, builder, status)
        return _finished(turn, "cancelled")

    async def _fail(
        self, turn: PreparedTurn, builder: PartsBuilder, exc: ParleyError
    ) -> ev.RunFailed:
        """The reply kept as ``error``; the event carries the error's HTTP status for JSON doors."""
        await self._finish(turn, builder, "error", exc.to_dict())
        return ev.RunFailed(
            message_id=turn.message_id, code=exc.code, message=exc.message, status=exc.status
        )

    def _messages(self, turn: PreparedTurn, builder: PartsBuilder) -> list[ChatMessage]:
        limit = self.settings.tool_result_max_chars
        steps = assistant_messages(builder.parts, limit)  # this reply's steps so far
        return self.context.fit(turn, steps)  # what fits the model's window (engine/context.py)

    async def _suspend(self, turn: PreparedTurn, builder: PartsBuilder) -> None:
        await self.record.suspend(turn, builder.parts)
        await self.budget.release(turn)

    async def _finish(
        self,
        turn: PreparedTurn,
        builder: PartsBuilder,
        status: str,
        error: ErrorInfo | None = None,
    ) -> None:
        await self.record.finish(turn, builder.parts, status, error)
        await asyncio.shield(self.budget.release(turn))
        if status == "complete" and self.summaries is not None:
            self.summaries.after_reply(turn, builder.parts)  # in the background


def _started(turn: PreparedTurn) -> ev.RunStarted:
    return ev.RunStarted(
        run_id=turn.run_id,
        conversation_id=turn.conversation_id,
        user_message_id=turn.user_message_id,
        message_id=turn.message_id,
        model=turn.model.ref,
        side_effects=turn.side_effects,
    )


def _finished(turn: PreparedTurn, reason: str) -> ev.RunFinished:
    return ev.RunFinished(
        message_id=turn.message_id,
        finish_reason=reason,
        prompt_tokens=turn.usage.prompt_tokens,
        completion_tokens=turn.usage.completion_tokens,
    )
