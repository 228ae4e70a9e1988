"""The run lifecycle: generations that live apart from the HTTP connection that started them.

The manager prepares a turn (which commits the user message), then drives the engine in a task of
its own and publishes every event to the run hub. Clients subscribe and resubscribe at will; only
``cancel`` stops a run. A run suspended for approval holds no task and no provider connection:
answering it, from any process and after any restart, continues it from the stored state.

``runs/`` sits above the engine: it depends on the engine's values (``TurnRequest``,
``PreparedTurn``, the events) and on :class:`~parley.runs.base.TurnEngine`, the five things it
asks of an engine, which :class:`parley.engine.turn.Engine` provides. Nothing in ``engine/``
imports ``runs/``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import jsonschema
import structlog

from parley.chat import events as ev
from parley.chat.ids import new_id
from parley.chat.usage import TokenUsage
from parley.config import Settings
from parley.engine.requests import PreparedTurn, TurnRequest
from parley.errors import Conflict, ValidationFailed, status_of
from parley.runs.base import RunHub, RunListener, TurnEngine
from parley.store import Store
from parley.store.values import ApprovalAsk, Caller, ElicitationAsk, Run

log = structlog.get_logger("parley.runs")


class RunManager:
    def __init__(
        self,
        *,
        engine: TurnEngine,
        hub: RunHub,
        store: Store,
        settings: Settings,
        instance: str | None = None,
    ) -> None:
        self.engine = engine
        self.hub = hub
        self.store = store
        self.settings = settings
        self.instance = instance or new_instance_id()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._turns: dict[str, PreparedTurn] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._seen_dead: dict[str, float] = {}  # run id -> when its owner first looked dead
        self.listeners: list[RunListener] = []
        self.ask_first_limit = 0.2  # seconds ``start`` waits for the model request to leave

    # starting and driving ----------------------------------------------------------------

    async def start(
        self, caller: Caller, conversation_id: str, request: TurnRequest
    ) -> PreparedTurn:
        """Validate and commit the turn (``caller`` needs ``write`` in the conversation), then
        run it in the background. Errors raise here.

        Returns once the model has the request (or the run ended first), or after
        ``ask_first_limit`` seconds: the run has the loop to itself until then, and the caller
        builds its response while the model thinks. Built first, the response's tasks and first
        write ran between the run's steps to the model and added to every first token
        (bench/RESULTS.md). The limit keeps a model host that does not answer the connection
        from holding the client's response (and its ``start`` event) for the whole connect
        timeout.
        """
        turn = await self.engine.prepare(caller, conversation_id, request, owner=self.instance)
        turn.asked = asyncio.get_running_loop().create_future()
        await self.hub.open(turn.run_id)
        await self._spawn(turn, resume=False)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.ask_first_limit):
                await turn.asked  # cancelled by the timeout: ``model_asked`` skips it then
        return turn

    def running(self) -> int:
        """How many runs this process is driving now."""
        return len(self._tasks)

    async def _spawn(self, turn: PreparedTurn, *, resume: bool) -> None:
        run_id = turn.run_id
        self._disarm_expiry(run_id)
        self._turns[run_id] = turn

        async def control(message: dict[str, Any]) -> None:
            await self._control(run_id, message)

        await self.hub.own(run_id, control)
        task = asyncio.create_task(self._drive(turn, resume), name=f"run {run_id}")
        task.add_done_callback(lambda _: turn.model_asked())  # even if it never ran
        self._tasks[run_id] = task
        loop = asyncio.get_running_loop()
        self._timers[run_id] = loop.call_later(self.settings.run_timeout, self._timeout, run_id)

    async def _drive(self, turn: PreparedTurn, resume: bool) -> None:
        run_id = turn.run_id
        structlog.contextvars.bind_contextvars(run_id=run_id)  # this task's context only
        ended = False  # it published its end: no need to ask the hub (a round trip on Redis)
        try:
            async for event in self.engine.run(turn, resume=resume):
                await self.hub.publish(run_id, event)
                ended = ev.is_terminal(event)
                for listener in self.listeners:
                    listener(turn, event)
        except Exception:
            log.exception("run_driver_failed", run_id=run_id)
            failure = ev.RunFailed(
                message_id=turn.message_id, code="ERR_INTERNAL", message="the run failed"
            )
            await self._publish_outside(run_id, failure)
            ended = True
        finally:
            if self._tasks.get(run_id) in (None, asyncio.current_task()):  # not a resumed run's
                self._forget(run_id)
                await self.hub.disown(run_id)
        if not ended and not await self.hub.is_finished(run_id):
            self._schedule_expiry(turn.user_id, run_id, self.settings.approval_timeout)
            # suspended: a restart that loses the hub's log goes on numbering after this
            await self.store.note_last_event(turn.user_id, run_id, await self.hub.last_id(run_id))
            # answers that came while the run was suspending found it still running
            await self.resume_if_ready(turn.user_id, run_id)

    async def _publish_outside(self, run_id: str, event: ev.EngineEvent) -> None:
        """Publish an event that no engine task produced (cancel of a suspended run, sweeps)."""
        await self.hub.publish(run_id, event)
        turn = self._turns.get(run_id)
        if turn is None:  # not a run of this process: listeners have nothing to place it by
            return
        for listener in self.listeners:
            with contextlib.suppress(Exception):
                listener(turn, event)

    def _forget(self, run_id: str) -> None:
        self._tasks.pop(run_id, None)
        self._turns.pop(run_id, None)
        timer = self._timers.pop(run_id, None)
        if timer is not None:
            timer.cancel()

    def _timeout(self, run_id: str) -> None:
        turn = self._turns.get(run_id)
        task = self._tasks.get(run_id)
        if turn is not None and task is not None:
            turn.cancel_reason = "timeout"
            task.cancel()

    async def _control(self, run_id: str, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "cancel":
            turn, task = self._turns.get(run_id), self._tasks.get(run_id)
            if turn is not None and task is not None:
                turn.cancel_reason = "cancel"
                task.cancel()
        elif kind == "elicitation":
            answer = {"action": message["action"], "content": message.get("content")}
            self.engine.answer_elicitation(message["elicitation_id"], answer)

    async def wait(self, run_id: str) -> None:
        """Wait for this process's task of ``run_id`` to end (tests and shutdown)."""
        task = self._tasks.get(run_id)
        if task is not None:
            await asyncio.shield(task)

    # subscribing -------------------------------------------------------------------------

    def turn_events(self, turn: PreparedTurn) -> AsyncIterator[tuple[int, ev.EngineEvent]]:
        """The events of a turn this process has just started for the caller: already theirs
        and in the hub, so the first token does not wait for a look-up."""
        return self.hub.subscribe(turn.run_id)

    async def events(
        self, caller: Caller, run_id: str, after: int = 0
    ) -> AsyncIterator[tuple[int, ev.EngineEvent]]:
        """The run's events after ``after`` (``caller`` needs ``read``); a finished run the hub
        forgot is told from the store."""
        run = await self.store.reach_run(caller, run_id, "read")
        if await self.hub.exists(run_id):
            async for item in self.hub.subscribe(run_id, after):
                yield item
            return
        if run.status in ("running", "awaiting"):
            await self.hub.open(run_id, after=run.last_event_id)
            async for item in self.hub.subscribe(run_id, after):
                yield item
            return
        for item in await self._replay_from_store(run, after):
            yield item

    async def _replay_from_store(self, run: Run, after: int) -> list[tuple[int, ev.EngineEvent]]:
        """The events after ``after`` of a finished run whose log is gone: its start, the stored
        reply as one text event, and its end. The live ids went with the log, so the end's id
        is above the client's and the run's stored one: a client's ids never go back, and one
        at or past the end gets the end alone (the stored message is the whole reply)."""
        *body, end = await self._stored_events(run)
        last = max(len(body) + 1, run.last_event_id + 1, after + 1)
        numbered = [*enumerate(body, start=1), (last, end)]
        return [item for item in numbered if item[0] > after]

    async def _stored_events(self, run: Run) -> list[ev.EngineEvent]:
        message = await self.store.get_message(run.user_id, run.conversation_id, run.message_id)
        events: list[ev.EngineEvent] = [
            ev.RunStarted(
                run_id=run.id,
                conversation_id=run.conversation_id,
                user_message_id=run.user_message_id,
                message_id=run.message_id,
                model=run.model or "",
            )
        ]
        if message.text:
            events.append(ev.TextDelta(content=message.text))
        if message.status == "error" and message.error:
            code = message.error["code"]
            status = status_of(code)
            events.append(ev.RunFailed(message_id=message.id, status=status, **message.error))
        else:
            reason = "cancelled" if message.status in ("cancelled", "interrupted") else "stop"
            events.append(
                ev.RunFinished(
                    message_id=message.id,
                    finish_reason=reason,
                    prompt_tokens=message.prompt_tokens,
                    completion_tokens=message.completion_tokens,
                )
            )
        return events

    # cancelling --------------------------------------------------------------------------

    async def cancel(self, caller: Caller, run_id: str) -> str:
        """Stop a run (``caller`` needs ``write``). The partial reply is kept as ``cancelled``.
        Returns the run's status."""
        run = await self.store.reach_run(caller, run_id, "write")
        if run.status == "running":
            if await self.hub.send_control(run_id, {"type": "cancel"}):
                await self._await_local(run_id)
                return "cancelled"
            return run.status
        if run.status == "awaiting":
            await self._cancel_suspended(run.user_id, run)
            return "cancelled"
        return run.status

    async def _await_local(self, run_id: str) -> None:
        task = self._tasks.get(run_id)
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                async with asyncio.timeout(5):
                    await asyncio.shield(task)

    async def _cancel_suspended(self, user_id: str, run: Run) -> None:
        claimed = await self._claim(user_id, run.id, to="cancelled")
        if not claimed:
            raise Conflict("the run is no longer waiting")
        self._disarm_expiry(run.id)
        for pending in await self.store.pending_for_run(user_id, run.id):
            await self.store.answer_pending(user_id, pending.id, "cancelled", {"action": "cancel"})
        message = await self.store.get_message(user_id, run.conversation_id, run.message_id)
        await self.store.finish_turn(
            user_id,
            run_id=run.id,
            message_id=run.message_id,
            conversation_id=run.conversation_id,
            status="cancelled",
            parts=message.parts,
            usage=TokenUsage(),
            run_status="cancelled",
        )
        await self.hub.open(run.id, after=run.last_event_id)
        await self._publish_outside(
            run.id, ev.RunFinished(message_id=run.message_id, finish_reason="cancelled")
        )

    async def _claim(self, user_id: str, run_id: str, *, to: str) -> bool:
        """Move a suspended run out of ``awaiting`` exactly once, whichever process asks."""
        return await self.store.claim_run(user_id, run_id, to=to, owner=self.instance)

    # approvals and elicitations ----------------------------------------------------------

    async def answer_approval(
        self,
        caller: Caller,
        run_id: str,
        tool_call_id: str,
        *,
        approved: bool,
        reason: str | None = None,
        remember: str | None = None,
    ) -> None:
        """Answer a tool call's approval (``caller`` needs ``write``); a remembered rule is
        the caller's own."""
        user_id = (await self.store.reach_run(caller, run_id, "write")).user_id
        pending = await self.store.get_pending(user_id, run_id, "approval", tool_call_id)
        ask = pending.payload
        tool_name = ask.tool_name if isinstance(ask, ApprovalAsk) else ""
        rule = self._rule(tool_name, remember) if remember and approved else None
        answer = {"approved": approved, "reason": reason, "by": caller.user_id}
        status = "approved" if approved else "denied"
        if not await self.store.answer_pending(user_id, pending.id, status, answer):
            raise Conflict("this tool call was already answered")
        if rule is not None:
            await self.store.add_rule(caller.user_id, *rule)
        await self.resume_if_ready(user_id, run_id)

    def _rule(self, tool_name: str, scope: str) -> tuple[str, str]:
        """The ``(scope, name)`` of the rule an answer asks to remember, checked before the
        answer is recorded: a refused rule leaves the approval open, not the run waiting."""
        if scope == "tool":
            return "tool", tool_name
        server = self.engine.server_of(tool_name)
        if server is None:
            raise ValidationFailed("this tool belongs to no server; remember it as 'tool'")
        return "server", server

    async def resume_if_ready(self, user_id: str, run_id: str) -> bool:
        """Continue a suspended run once none of its approvals is still open."""
        pendings = await self.store.pending_for_run(user_id, run_id)
        if any(p.kind == "approval" and p.status == "pending" for p in pendings):
            return False
        if not await self._claim(user_id, run_id, to="running"):
            return False
        run = await self.store.get_run(user_id, run_id)
        turn = await self.engine.reopen(user_id, run)
        await self.hub.open(run_id, after=run.last_event_id)
        await self._spawn(turn, resume=True)
        return True

    async def answer_elicitation(
        self,
        caller: Caller,
        run_id: str,
        elicitation_id: str,
        *,
        action: str,
        content: dict[str, Any] | None,
    ) -> None:
        """Answer a tool's question (``caller`` needs ``write``)."""
        user_id = (await self.store.reach_run(caller, run_id, "write")).user_id
        pending = await self.store.get_pending(user_id, run_id, "elicitation", elicitation_id)
        if pending.status != "pending":
            raise Conflict("this question was already answered")
        if action == "accept":
            ask = pending.payload
            _check_form(ask.requested_schema if isinstance(ask, ElicitationAsk) else {}, content)
        answer = {"action": action, "content": content if action == "accept" else None}
        if not await self.store.answer_pending(user_id, pending.id, action, answer):
            raise Conflict("this question was already answered")
        message = {"type": "elicitation", "elicitation_id": elicitation_id, **answer}
        if not await self.hub.send_control(run_id, message):
            raise Conflict("the tool that asked this is no longer running")

    # expiry and start-up -----------------------------------------------------------------

    def _schedule_expiry(self, user_id: str, run_id: str, delay: float) -> None:
        loop = asyncio.get_running_loop()

        def fire() -> None:
            self._timers.pop(f"expiry:{run_id}", None)
            task = asyncio.ensure_future(self.expire(user_id, run_id))
            task.add_done_callback(_log_failure)

        self._disarm_expiry(run_id)
        self._timers[f"expiry:{run_id}"] = loop.call_later(max(0.0, delay), fire)

    def _disarm_expiry(self, run_id: str) -> None:
        """The run no longer waits for a person (answered, resumed or cancelled)."""
        timer = self._timers.pop(f"expiry:{run_id}", None)
        if timer is not None:
            timer.cancel()

    async def expire(self, user_id: str, run_id: str) -> None:
        """Deny every approval of ``run_id`` that is past its time, then continue the run."""
        now = datetime.now(UTC)
        for pending in await self.store.pending_for_run(user_id, run_id):
            if pending.status == "pending" and pending.expires_at <= now:
                await self.store.answer_pending(
                    user_id, pending.id, "expired", {"approved": False, "reason": "timed out"}
                )
        await self.resume_if_ready(user_id, run_id)

    async def recover(self) -> int:
        """At start-up: interrupt runs whose process died; re-arm timers of runs awaiting a person."""
        count = await self.sweep()
        now = datetime.now(UTC)
        for run_id, user_id in await self.store.awaiting_runs():
            pendings = await self.store.pending_for_run(user_id, run_id)
            open_ = [p.expires_at for p in pendings if p.status == "pending"]
            delay = (min(open_) - now).total_seconds() if open_ else 0.0
            self._schedule_expiry(user_id, run_id, delay)
        return count

    async def sweep(self, clock: float | None = None) -> int:
        """Fail every running run whose process is gone: its subscribers get an ``error``. An
        owner must look dead for the hub's ``confirm_dead_after`` first (``clock``: monotonic
        seconds, for tests)."""
        count = 0
        now, clock = datetime.now(UTC), time.monotonic() if clock is None else clock
        seen_dead, self._seen_dead = self._seen_dead, {}
        for run in await self.store.running_runs():
            if run.id in self._tasks or run.owner == self.instance:
                continue
            if run.owner is None and (now - run.created_at).total_seconds() < 30:
                continue
            if run.owner not in (None, self.instance) and await self.hub.alive(run.owner):
                continue
            self._seen_dead[run.id] = since = seen_dead.get(run.id, clock)
            if clock - since < self.hub.confirm_dead_after:
                continue
            if await self.store.interrupt_run(run):
                count += 1
                log.warning("run_orphaned", run_id=run.id, owner=run.owner)
                if await self.hub.exists(run.id):  # else the log died with it: the store answers
                    await self._publish_outside(run.id, _orphaned(run))
        return count

    async def sweep_forever(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.sweep()
            except Exception:
                log.exception("sweep_failed")

    async def aclose(self) -> None:
        """Let running runs go on for ``shutdown_grace`` seconds, then stop those left: each
        stores its partial reply as interrupted and publishes its end."""
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        tasks = list(self._tasks.values())
        if tasks and self.settings.shutdown_grace > 0:
            log.info("runs_draining", runs=len(tasks), grace=self.settings.shutdown_grace)
            await asyncio.wait(tasks, timeout=self.settings.shutdown_grace)
        for run_id, turn in list(self._turns.items()):
            turn.cancel_reason = "shutdown"
            task = self._tasks.get(run_id)
            if task is not None:
                task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)

    def local_run_ids(self) -> list[str]:
        return list(self._tasks)


def new_instance_id() -> str:
    """This process's name in Redis and in ``runs.owner``."""
    return f"{socket.gethostname()}:{os.getpid()}:{new_id('proc')[-6:]}"


def _check_form(schema: dict[str, Any], content: dict[str, Any] | None) -> None:
    if content is None:
        raise ValidationFailed("accept needs content", status=422)
    try:
        jsonschema.validate(content, schema)
    except jsonschema.ValidationError as exc:
        raise ValidationFailed(
            f"content does not match the form: {exc.message}", status=422
        ) from exc


def _orphaned(run: Run) -> ev.RunFailed:
    return ev.RunFailed(
        message_id=run.message_id,
        code="ERR_INTERNAL",
        message="the process running this reply stopped; the partial reply is kept",
    )


def _log_failure(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("expiry_failed", error=str(task.exception()))
