"""``Engine.prepare`` + ``Engine.run``: one user message becomes a stream of engine events.

``prepare`` validates the request and commits the user message, the streaming assistant message
and the run in one transaction, before any model is called. ``run`` is the tool loop: call the
model, run the tools it asks for (in parallel), feed the results back, up to ``max_steps``. A tool
that needs approval suspends the run: its state is stored, the generator ends without a terminal
event, and :meth:`Engine.run` is called again with ``resume=True`` once the person answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import structlog

from parley.chat import events as ev
from parley.chat.ids import new_id
from parley.chat.messages import Part, PartsBuilder
from parley.chat.usage import TokenUsage
from parley.config import ProfileConfig, Settings
from parley.engine.context import ContextWindow, TurnContext
from parley.engine.history import assistant_messages, to_chat, user_message
from parley.engine.message_limits import MessageLimits
from parley.engine.summaries import Summaries, title_from
from parley.engine.tools import ToolRunner, ToolSet
from parley.errors import ApiKeyMissing, ParleyError, ValidationFailed
from parley.limits import Limiter, Reservation, price_of
from parley.providers.base import (
    ChatMessage,
    FinishChunk,
    ProviderRequest,
    QueueChunk,
    ReasoningChunk,
    TextChunk,
    ToolCallChunk,
    UsageChunk,
)
from parley.providers.registry import ProviderRegistry, ResolvedModel
from parley.store import Store
from parley.store.checkpoints import CheckpointWriter
from parley.store.values import Message, RunState

log = structlog.get_logger("parley.engine")

Mode = Literal["send", "regenerate", "edit", "continue"]
BUILTIN_PROFILES = {
    "generalist": ProfileConfig(
        system_prompt="You are a helpful assistant.", tools=["*"], description="every tool"
    ),
    "todo": ProfileConfig(
        system_prompt=(
            "You are a task assistant. Use the todo tools to add, list, update, complete and "
            "delete the user's tasks. Confirm what you did in one short sentence."
        ),
        tools=["add_task", "list_tasks", "update_task", "complete_task", "delete_task", "todo__*"],
        description="the todo tools and a task-assistant prompt",
    ),
}


@dataclass
class TurnRequest:
    """What a door asks the engine for; every door builds one of these.

    ``mode="continue"`` adds a reply after the active leaf with no new user message (a client
    that ran tools itself sent their results). ``external_tools`` are ``{name, description,
    parameters}`` specs the model sees but parley does not run: a step that calls one ends the
    run with ``finish_reason="tool_calls"`` (the OpenAI door hands the calls to its client).
    """

    content: str | None = None
    parts: list[Part] = field(default_factory=list)
    mode: Mode = "send"
    parent_id: str | None = None
    target_id: str | None = None
    model: str | None = None
    provider: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    profile: str | None = None
    servers: list[str] | None = None
    approve_all: bool = False
    external_tools: list[dict[str, Any]] | None = None


@dataclass
class PreparedTurn:
    run_id: str
    user_id: str
    conversation_id: str
    user_message_id: str | None
    message_id: str
    model: ResolvedModel
    temperature: float | None
    max_tokens: int | None
    system: str | None
    history: list[Message]
    tools: ToolSet
    max_steps: int
    side_effects: list[dict[str, Any]] = field(default_factory=list)
    parts: list[Part] = field(default_factory=list)
    step: int = 0
    usage: TokenUsage = field(default_factory=TokenUsage)
    cancel_reason: str | None = None
    checkpointer: _Checkpointer | None = None
    reservation: Reservation | None = None
    cost: float = 0.0
    # Resolved once the first model request is on the wire, or will not be (see RunManager.start).
    asked: asyncio.Future[None] | None = None
    context: TurnContext = field(default_factory=TurnContext)  # the summary, what was sent

    def model_asked(self) -> None:
        if self.asked is not None and not self.asked.done():
            self.asked.set_result(None)


class Engine:
    def __init__(
        self,
        *,
        settings: Settings,
        store: Store,
        providers: ProviderRegistry,
        tools: ToolRunner,
        limiter: Limiter | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.checkpoints = CheckpointWriter(store)
        self.providers = providers
        self.tools = tools
        self.limiter = limiter
        self.message_limits = MessageLimits.of(settings)
        # long conversations: what the model sees, and the summaries and titles after a reply
        self.context = ContextWindow(settings, store)
        self.summaries = Summaries(settings, store, providers, self.context)

    # prepare ----------------------------------------------------------------------------

    def check(self, request: TurnRequest, *, earlier: Iterable[list[Part]] = ()) -> None:
        """Hold the request's new user message, and ``earlier`` user messages a client sends
        with it (the OpenAI door's history), to the limits every door shares; nothing is read
        or written. :meth:`prepare` calls it first: a door that writes before it starts a turn
        (a new conversation, a client's history) calls it before that write."""
        for parts in earlier:
            self.message_limits.check(parts)
        if request.mode in ("send", "edit"):
            self.message_limits.check(_user_parts(request))

    def profile(self, name: str | None) -> ProfileConfig | None:
        if name is None:
            return None
        profile = self.settings.profiles.get(name) or BUILTIN_PROFILES.get(name)
        if profile is None:
            raise ValidationFailed(f"unknown profile {name!r}")
        return profile

    async def prepare(
        self, user_id: str, conversation_id: str, request: TurnRequest, *, owner: str | None = None
    ) -> PreparedTurn:
        self.check(request)
        convo = await self.store.get_conversation(user_id, conversation_id)
        profile = self.profile(request.profile or convo.profile)
        model = self._model(request, convo.model, convo.provider, profile)
        if model.provider.missing_key:
            raise ApiKeyMissing(model.provider.missing_key)
        if request.parts and not model.capabilities.vision and _has_images(request.parts):
            raise ValidationFailed(f"the model {model.ref} cannot take image attachments")
        parent_id, user_parts, side_ids = await self._branch_point(user_id, convo, request)
        history, context = await self.context.load(user_id, convo, parent_id, model)
        side_effects = await self._side_effects(user_id, conversation_id, side_ids)
        run_id = new_id("run")
        title = title_from(user_parts) if user_parts else None
        reservation = await self._admit(user_id, run_id, model, history, user_parts, request)
        try:
            user_message, assistant = await self.store.begin_turn(
                user_id,
                conversation_id,
                user_parts=user_parts,
                parent_id=parent_id,
                model=model.ref,
                run_id=run_id,
                title=title,
                owner=owner,
                parent_depth=_depth_of(history, parent_id),
            )
        except BaseException:
            if reservation is not None and self.limiter is not None:
                await self.limiter.release(reservation)
            raise
        if user_message is not None:
            history.append(user_message)
        return PreparedTurn(
            run_id=run_id,
            user_id=user_id,
            conversation_id=conversation_id,
            user_message_id=user_message.id if user_message else None,
            message_id=assistant.id,
            model=model,
            reservation=reservation,
            temperature=request.temperature
            if request.temperature is not None
            else convo.temperature,
            max_tokens=request.max_tokens,
            system=convo.system or (profile.system_prompt if profile else None),
            history=history,
            tools=self._tools(model, profile, request, user_id),
            max_steps=profile.max_steps if profile else self.settings.max_steps,
            side_effects=side_effects,
            context=context,
        )

    def _tools(
        self,
        model: ResolvedModel,
        profile: ProfileConfig | None,
        request: TurnRequest,
        user_id: str,
    ) -> ToolSet:
        """The run's tools: none for a model that cannot call tools (it would answer in calls)."""
        if not model.capabilities.tools:
            return ToolSet()
        external = request.external_tools or ()
        return self.tools.toolset(profile, request.servers, request.approve_all, user_id, external)

    def _model(
        self,
        request: TurnRequest,
        convo_model: str | None,
        convo_provider: str | None,
        profile: ProfileConfig | None,
    ) -> ResolvedModel:
        if request.model or request.provider:
            return self.providers.resolve(request.model, request.provider)
        if convo_model or convo_provider:
            return self.providers.resolve(convo_model, convo_provider)
        return self.providers.resolve(profile.model if profile else None)

    async def _branch_point(
        self, user_id: str, convo: Any, request: TurnRequest
    ) -> tuple[str | None, list[Part] | None, list[str]]:
        """Where the new messages attach, the user message parts, and the messages replaced."""
        if request.mode == "continue":
            return convo.active_leaf_id, None, []
        if request.mode == "send":
            parts = _user_parts(request)
            parent = request.parent_id or convo.active_leaf_id
            if request.parent_id:
                await self.store.get_message(user_id, convo.id, request.parent_id)
            return parent, parts, []
        if request.target_id is None:
            raise ValidationFailed("a message id is required")
        target = await self.store.get_message(user_id, convo.id, request.target_id)
        replaced = await self._tail_from(user_id, convo, target.id)
        if request.mode == "regenerate":
            if target.role != "assistant":
                raise ValidationFailed("only an assistant message can be regenerated")
            return target.parent_id, None, replaced
        if target.role != "user":
            raise ValidationFailed("only a user message can be edited")
        return target.parent_id, _user_parts(request), replaced

    async def _tail_from(self, user_id: str, convo: Any, message_id: str) -> list[str]:
        """Ids of the active branch from ``message_id`` down to the leaf."""
        branch = await self.store.branch(user_id, convo.id, leaf_id=convo.active_leaf_id)
        ids = [m.id for m in branch]
        return ids[ids.index(message_id) :] if message_id in ids else [message_id]

    async def _side_effects(
        self, user_id: str, conversation_id: str, message_ids: list[str]
    ) -> list[dict[str, Any]]:
        calls = await self.store.side_effects_after(user_id, conversation_id, message_ids)
        return [side_effect(c) for c in calls]

    # run ---------------------------------------------------------------------------------

    async def run(
        self, turn: PreparedTurn, *, resume: bool = False
    ) -> AsyncIterator[ev.EngineEvent]:
        """The tool loop. Ends with ``RunFinished``/``RunFailed``, or silently when suspended."""
        builder = PartsBuilder(turn.parts)
        saver = _Checkpointer(self.checkpoints, turn, self.settings.checkpoint_interval)
        aside = _StepAside()
        try:
            if not resume:
                yield ev.RunStarted(
                    run_id=turn.run_id,
                    conversation_id=turn.conversation_id,
                    user_message_id=turn.user_message_id,
                    message_id=turn.message_id,
                    model=turn.model.ref,
                    side_effects=turn.side_effects,
                )
            else:
                async for event in self.tools.resume(turn, builder):
                    builder.apply(event)
                    yield event
            finish: str = "stop"
            first_step = not resume
            while turn.step < turn.max_steps:
                turn.step += 1
                if not first_step:
                    await self._reserve_step(turn, builder)
                first_step = False
                builder.start_step()
                calls: list[ev.ToolCallReady] = []
                async for event in self._model_step(turn, builder, calls):
                    builder.apply(event)
                    yield event
                    saver.maybe(builder)
                    if aside.due(event):
                        await aside.give()
                if not calls:
                    finish = "stop" if finish != "length" else finish
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
            yield self._finished(turn, finish)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            async for event in self._on_cancel(turn, builder):
                yield event
        except ParleyError as exc:
            await self._finish(turn, builder, "error", exc.to_dict())
            yield ev.RunFailed(message_id=turn.message_id, code=exc.code, message=exc.message)
        except Exception as exc:
            log.exception("run_crashed", run_id=turn.run_id)
            error = {"code": "ERR_INTERNAL", "message": "the run failed unexpectedly"}
            with contextlib.suppress(Exception):
                await self._finish(turn, builder, "error", error)
            yield ev.RunFailed(message_id=turn.message_id, **error)
            del exc

    async def _on_cancel(
        self, turn: PreparedTurn, builder: PartsBuilder
    ) -> AsyncIterator[ev.EngineEvent]:
        if turn.cancel_reason == "timeout":
            error = {"code": "ERR_TIMEOUT", "message": "the run took longer than allowed"}
            await self._finish(turn, builder, "error", error)
            yield ev.RunFailed(message_id=turn.message_id, **error)
            return
        status = "interrupted" if turn.cancel_reason == "shutdown" else "cancelled"
        await self._finish(turn, builder, status)
        yield self._finished(turn, "cancelled")

    def _finished(self, turn: PreparedTurn, reason: str) -> ev.RunFinished:
        return ev.RunFinished(
            message_id=turn.message_id,
            finish_reason=reason,
            prompt_tokens=turn.usage.prompt_tokens,
            completion_tokens=turn.usage.completion_tokens,
        )

    async def _model_step(
        self, turn: PreparedTurn, builder: PartsBuilder, calls: list[ev.ToolCallReady]
    ) -> AsyncIterator[ev.EngineEvent]:
        provider = turn.model.provider
        request = ProviderRequest(
            model=turn.model.model,
            messages=self._messages(turn, builder),
            tools=turn.tools.specs(),
            temperature=turn.temperature,
            max_tokens=turn.max_tokens,
            on_sent=turn.model_asked if provider.reports_sent else None,
        )
        if not provider.reports_sent:
            turn.model_asked()
        assembler = _ToolCallAssembler()
        finish = "stop"
        stream = provider.stream(request)
        try:
            async for chunk in stream:
                if isinstance(chunk, TextChunk):
                    if chunk.text:
                        yield ev.TextDelta(content=chunk.text)
                elif isinstance(chunk, ReasoningChunk):
                    if chunk.text:
                        yield ev.ReasoningDelta(content=chunk.text)
                elif isinstance(chunk, ToolCallChunk):
                    for event in assembler.add(chunk):
                        yield event
                elif isinstance(chunk, UsageChunk):
                    step_usage = TokenUsage(
                        prompt_tokens=chunk.prompt_tokens, completion_tokens=chunk.completion_tokens
                    )
                    turn.usage = turn.usage + step_usage
                    self.context.calibrate(turn, chunk.prompt_tokens)
                    await self._charge(turn, step_usage)
                    yield ev.Usage(
                        prompt_tokens=chunk.prompt_tokens, completion_tokens=chunk.completion_tokens
                    )
                elif isinstance(chunk, FinishChunk):
                    finish = chunk.reason
                elif isinstance(chunk, QueueChunk):
                    yield ev.ToolProgress(
                        tool_call_id="",
                        tool_name="",
                        message=f"waiting for the model: position {chunk.position} in the queue",
                    )
        finally:
            turn.model_asked()  # it failed before its request left, say
            await stream.aclose()  # type: ignore[attr-defined]
        for ready in assembler.finish():
            calls.append(ready)
            yield ready
        yield ev.StepFinished(step=turn.step, finish_reason=finish)

    def _messages(self, turn: PreparedTurn, builder: PartsBuilder) -> list[ChatMessage]:
        limit = self.settings.tool_result_max_chars
        steps = assistant_messages(builder.parts, limit)  # this reply's steps so far
        return self.context.fit(turn, steps)  # what fits the model's window (engine/context.py)

    async def _admit(
        self,
        user_id: str,
        run_id: str,
        model: ResolvedModel,
        history: list[Message],
        user_parts: list[Part] | None,
        request: TurnRequest,
    ) -> Reservation | None:
        """Rate limits and the first step's budget reservation, before anything is written."""
        if self.limiter is None or not self.limiter.active(user_id):
            return None
        chat = to_chat(history, system=None, max_result_chars=self.settings.tool_result_max_chars)
        if user_parts:
            chat.append(user_message(user_parts))
        estimate = self._estimate(chat, request.max_tokens)
        return await self.limiter.admit(user_id, run_id, model.ref, estimate)

    def _estimate(self, messages: list[ChatMessage], max_tokens: int | None) -> int:
        """Prompt tokens (about four characters each) plus what the reply may use."""
        chars = sum(len(m.content) if isinstance(m.content, str) else 0 for m in messages)
        chars += sum(len(c.arguments) for m in messages for c in m.tool_calls)
        return math.ceil(chars / 4) + (max_tokens or self.settings.reply_tokens_estimate)

    async def _reserve_step(self, turn: PreparedTurn, builder: PartsBuilder) -> None:
        if self.limiter is None or turn.reservation is None:
            return
        estimate = self._estimate(self._messages(turn, builder), turn.max_tokens)
        await self.limiter.reserve(turn.reservation, turn.model.ref, estimate)

    async def _charge(self, turn: PreparedTurn, usage: TokenUsage) -> None:
        cost = price_of(self.settings, turn.model.ref, usage.prompt_tokens, usage.completion_tokens)
        turn.cost += cost
        if self.limiter is not None and turn.reservation is not None:
            await self.limiter.settle(turn.reservation, usage.total_tokens, cost)

    async def _release(self, turn: PreparedTurn) -> None:
        if self.limiter is not None and turn.reservation is not None:
            held, turn.reservation = turn.reservation, None
            await self.limiter.release(held)

    async def _suspend(self, turn: PreparedTurn, builder: PartsBuilder) -> None:
        await _settle(turn)
        state = RunState(
            step=turn.step,
            max_steps=turn.max_steps,
            model=turn.model.ref,
            temperature=turn.temperature,
            max_tokens=turn.max_tokens,
            system=turn.system,
            tools=turn.tools.state(),
        )
        await self.store.finish_turn(
            turn.user_id,
            run_id=turn.run_id,
            message_id=turn.message_id,
            conversation_id=turn.conversation_id,
            status="awaiting",
            parts=builder.parts,
            usage=turn.usage,
            cost=turn.cost,
            run_status="awaiting",
            run_state=state,
        )
        turn.usage = TokenUsage()
        turn.cost = 0.0
        await self._release(turn)

    async def _finish(
        self,
        turn: PreparedTurn,
        builder: PartsBuilder,
        status: str,
        error: dict[str, str] | None = None,
    ) -> None:
        await _settle(turn)
        await asyncio.shield(
            self.store.finish_turn(
                turn.user_id,
                run_id=turn.run_id,
                message_id=turn.message_id,
                conversation_id=turn.conversation_id,
                status=status,
                parts=builder.parts,
                usage=turn.usage,
                cost=turn.cost,
                error=error,
            )
        )
        await asyncio.shield(self._release(turn))
        if status == "complete":
            self.summaries.after_reply(turn, builder.parts)  # in the background


class _ToolCallAssembler:
    """Joins tool-call fragments by index into ready calls with parsed arguments."""

    def __init__(self) -> None:
        self._calls: dict[int, dict[str, str]] = {}

    def add(self, chunk: ToolCallChunk) -> list[ev.EngineEvent]:
        out: list[ev.EngineEvent] = []
        call = self._calls.get(chunk.index)
        if call is None:
            call = {"id": chunk.id or new_id("call"), "name": chunk.name or "", "args": ""}
            self._calls[chunk.index] = call
            out.append(ev.ToolCallStarted(tool_call_id=call["id"], tool_name=call["name"]))
        elif chunk.name and not call["name"]:
            call["name"] = chunk.name
        if chunk.arguments:
            call["args"] += chunk.arguments
            out.append(ev.ToolCallArgsDelta(tool_call_id=call["id"], delta=chunk.arguments))
        return out

    def finish(self) -> list[ev.ToolCallReady]:
        ready = []
        for index in sorted(self._calls):
            call = self._calls[index]
            try:
                args = json.loads(call["args"]) if call["args"].strip() else {}
            except json.JSONDecodeError:
                args = {"__invalid_json__": call["args"]}
            if not isinstance(args, dict):
                args = {"__invalid_json__": call["args"]}
            ready.append(
                ev.ToolCallReady(tool_call_id=call["id"], tool_name=call["name"], args=args)
            )
        return ready


class _StepAside:
    """When a run hands the loop to the readers of what it publishes.

    A run reading a burst (a fast model's chunks arrive many to a socket read) publishes event
    after event without waiting for anything, and its readers, which write to the clients, only
    run once it waits: the first token went out after the whole burst was parsed (about 1 ms
    of the benchmark's added time to first token), and other streams waited as long. So a run
    steps aside at its first text and after every ``budget`` seconds of a burst. Two steps: one
    for the encoder, one for the response it wakes. A run that is waiting for its model between
    events (a gap of ``gap`` seconds or more) is not in a burst and never steps aside. It steps
    aside inside :meth:`Engine.run`, after the event was published: a cancel that arrives
    meanwhile lands where the run handles it (the reply saved as cancelled).
    """

    def __init__(self, budget: float = 0.002, gap: float = 0.0005) -> None:
        self.budget = budget
        self.gap = gap
        self.first_text = True
        self.burst_since = self.last = time.perf_counter()

    def due(self, event: ev.EngineEvent) -> bool:
        now = time.perf_counter()
        if now - self.last >= self.gap:
            self.burst_since = now
        self.last = now
        if self.first_text and isinstance(event, ev.TextDelta):
            self.first_text = False
            return True
        return now - self.burst_since >= self.budget

    async def give(self) -> None:
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        self.burst_since = self.last = time.perf_counter()


class _Checkpointer:
    """Saves the streaming reply at most once per ``interval`` seconds, never per token, and
    without waiting: the parts go to the engine's :class:`CheckpointWriter`, which saves every
    reply's checkpoint in one transaction. With hundreds of runs, a run that waited for its own
    write held its events back (p99 gaps of 400 ms at 100 paced streams in bench/).

    The turn's final write waits for :meth:`settle`, so an older checkpoint never lands after it.
    """

    def __init__(self, writer: CheckpointWriter, turn: PreparedTurn, interval: float) -> None:
        self.writer = writer
        # the reply's ids, not the turn: the turn holds this, and a cycle between them would
        # leave every finished turn for a full garbage collection to free (bench/RESULTS.md)
        self.user_id = turn.user_id
        self.message_id = turn.message_id
        self.interval = interval
        self.last = time.monotonic()
        turn.checkpointer = self

    def maybe(self, builder: PartsBuilder) -> None:
        now = time.monotonic()
        if now - self.last < self.interval:
            return
        self.last = now
        snapshot = [dict(part) for part in builder.parts]  # the builder goes on changing them
        self.writer.submit(self.user_id, self.message_id, snapshot)

    async def settle(self) -> None:
        await self.writer.settle(self.message_id)


async def _settle(turn: PreparedTurn) -> None:
    """Let a checkpoint under way land before the turn's own write."""
    if turn.checkpointer is not None:
        await turn.checkpointer.settle()


def side_effect(call: Any) -> dict[str, Any]:
    return {
        "tool_call_id": call.tool_call_id,
        "tool_name": call.tool_name,
        "server": call.server,
        "arguments": call.arguments,
        "message_id": call.message_id,
        "at": call.finished_at.isoformat() if call.finished_at else None,
    }


def _user_parts(request: TurnRequest) -> list[Part]:
    parts: list[Part] = []
    if request.content:
        parts.append({"type": "text", "text": request.content})
    parts.extend(request.parts)
    if not parts:
        raise ValidationFailed("the message is empty")
    return parts


def _depth_of(history: list[Message], message_id: str | None) -> int | None:
    """The depth of the last message of ``history`` when it is ``message_id``."""
    return history[-1].depth if history and history[-1].id == message_id else None


def _has_images(parts: list[Part]) -> bool:
    return any(str(p.get("mediaType", "")).startswith("image/") for p in parts)
