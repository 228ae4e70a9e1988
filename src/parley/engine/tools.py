"""Running the tools a model asked for: validation, approval, parallel calls, timeouts, audit."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from typing import Any

import jsonschema
import structlog

from parley.chat import events as ev
from parley.chat.ids import new_id
from parley.chat.messages import PartsBuilder
from parley.chat.usage import TokenUsage
from parley.config import ProfileConfig, Settings
from parley.engine.history import DENIED
from parley.engine.requests import PreparedTurn
from parley.engine.toolset import ToolSet
from parley.engine.waiters import Waiters
from parley.providers.base import ToolSpec
from parley.store import Store
from parley.store.errors import StorageError
from parley.store.values import (
    ApprovalAsk,
    ElicitationAsk,
    PendingInput,
    ToolCall,
    ToolCallEnd,
    ToolChoice,
    utcnow,
)
from parley.tools.base import Deadline, ElicitCallback, Tool, ToolContext, ToolOutput
from parley.tools.registry import ToolRegistry, delegate_tool_name

log = structlog.get_logger("parley.tools")
_DONE = object()
TIMEOUT = "timeout"  # who answered an approval nobody answered in time


class ToolRunner:
    """Chooses tools for a run and executes the calls of one model step.

    ``elicit`` is the hook for where the questions a tool asks go: by default to the person,
    as an ``ElicitationRequested`` event and a pending input they answer through the run
    manager; a subagent's tools ask through the tool call of their parent instead.
    """

    def __init__(
        self,
        settings: Settings,
        store: Store,
        registry: ToolRegistry,
        *,
        elicit: ElicitCallback | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.registry = registry
        self.elicit = elicit
        self.waiters = Waiters()

    def toolset(
        self,
        profile: ProfileConfig | None,
        servers: Sequence[str] | None,
        approve_all: bool,
        user_id: str,
        external: Sequence[dict[str, Any]] = (),
    ) -> ToolSet:
        patterns = list(profile.tools) if profile else ["*"]
        if profile is not None:
            patterns += [delegate_tool_name(name) for name in profile.delegate_to]
        chosen = self.registry.select(patterns, servers=servers)
        return ToolSet(
            tools={t.name: t for t in chosen},
            approve_all=approve_all,
            patterns=patterns,
            servers=list(servers) if servers is not None else None,
            external={spec["name"]: ToolSpec(**spec) for spec in external},
        )

    def toolset_from_state(self, state: ToolChoice) -> ToolSet:
        patterns = state.patterns or ["*"]
        chosen = self.registry.select(patterns, servers=state.servers)
        return ToolSet(
            tools={t.name: t for t in chosen},
            approve_all=state.approve_all,
            patterns=patterns,
            servers=state.servers,
        )

    # one step's calls --------------------------------------------------------------------

    async def execute(
        self, turn: PreparedTurn, builder: PartsBuilder, calls: list[ev.ToolCallReady]
    ) -> AsyncIterator[ev.EngineEvent]:
        """Run the step's calls concurrently; calls that need approval are parked instead."""
        rules = await self._rules(turn.acting_user)
        runnable: list[tuple[ev.ToolCallReady, Tool]] = []
        for call in calls:
            tool = turn.tools.tools.get(call.tool_name)
            problem = self._problem(call, tool)
            if problem is not None or tool is None:
                await self._audit_rejected(turn, call, tool, problem or "unknown tool")
                yield ev.ToolFailed(
                    tool_call_id=call.tool_call_id, tool_name=call.tool_name, error=problem or ""
                )
            elif self._needs_approval(tool, turn.tools, rules):
                yield await self._park(turn, call, tool)
            else:
                runnable.append((call, tool))
        async for event in self._run_all(turn, runnable, approved_by=None):
            yield event

    async def resume(
        self, turn: PreparedTurn, builder: PartsBuilder
    ) -> AsyncIterator[ev.EngineEvent]:
        """After the person answered: run the approved calls, tell the model about denials."""
        approved: list[tuple[ev.ToolCallReady, Tool]] = []
        audit_ids: dict[str, str] = {}
        for pending in await self.store.pending_for_run(turn.user_id, turn.run_id):
            ask = pending.payload
            if not isinstance(ask, ApprovalAsk) or ask.resumed:
                continue
            event, runnable = await self._resolution(turn, pending, ask)
            yield event
            if runnable is not None:
                approved.append(runnable)
                if ask.audit_id is not None:
                    audit_ids[runnable[0].tool_call_id] = ask.audit_id
            elif isinstance(event, ev.ApprovalResolved):
                yield ev.ToolFailed(
                    tool_call_id=event.tool_call_id,
                    tool_name=event.tool_name,
                    error=_denial_text(event.reason),
                    denied=True,
                )
        async for event in self._run_all(
            turn, approved, approved_by=turn.acting_user, audit_ids=audit_ids
        ):
            yield event

    async def _resolution(
        self, turn: PreparedTurn, pending: PendingInput, ask: ApprovalAsk
    ) -> tuple[ev.EngineEvent, tuple[ev.ToolCallReady, Tool] | None]:
        answer = pending.answer or {}
        approved = pending.status == "approved"
        reason = answer.get("reason") or ("timed out" if pending.status == "expired" else None)
        await self.store.answer_pending(turn.user_id, pending.id, pending.status, answer)
        await self.store.mark_resumed(turn.user_id, pending.id, ask)
        status = "approved" if approved else "denied"
        by = TIMEOUT if pending.status == "expired" else str(answer.get("by") or turn.acting_user)
        if ask.audit_id is not None:
            await self.store.update_tool_call(
                turn.user_id, ask.audit_id, status=status, approved_by=by, error=reason
            )
        event = ev.ApprovalResolved(
            tool_call_id=pending.tool_call_id or "",
            tool_name=ask.tool_name,
            approved=approved,
            reason=reason,
            by=by,
        )
        tool = turn.tools.tools.get(ask.tool_name) or self.registry.get(ask.tool_name)
        if not approved or tool is None:
            return event, None
        call = ev.ToolCallReady(
            tool_call_id=pending.tool_call_id or "", tool_name=ask.tool_name, args=ask.args
        )
        return event, (call, tool)

    # helpers -----------------------------------------------------------------------------

    def _problem(self, call: ev.ToolCallReady, tool: Tool | None) -> str | None:
        if tool is None:
            return f"unknown tool {call.tool_name!r}"
        if "__invalid_json__" in call.args:
            return "the arguments are not valid JSON"
        validator = jsonschema.Draft202012Validator(tool.input_schema)
        problems = [e.message for e in validator.iter_errors(call.args)]
        if problems:
            return "invalid arguments: " + "; ".join(problems[:5])
        return None

    def _needs_approval(self, tool: Tool, toolset: ToolSet, rules: set[tuple[str, str]]) -> bool:
        if ("tool", tool.name) in rules or (tool.server and ("server", tool.server) in rules):
            return False
        if toolset.approve_all or self.settings.approvals == "all":
            return True
        asks = tool.requires_approval or tool.destructive
        return self.settings.approvals == "policy" and asks

    async def _rules(self, user_id: str) -> set[tuple[str, str]]:
        return {(r.scope, r.name) for r in await self.store.list_rules(user_id)}

    async def _park(self, turn: PreparedTurn, call: ev.ToolCallReady, tool: Tool) -> ev.EngineEvent:
        audit = self._audit_row(turn, call, tool, status="requires_approval")
        await self.store.record_tool_call(audit)
        expires = utcnow() + timedelta(seconds=self.settings.approval_timeout)
        pending = PendingInput(
            id=new_id("appr"),
            kind="approval",
            run_id=turn.run_id,
            user_id=turn.user_id,
            conversation_id=turn.conversation_id,
            tool_call_id=call.tool_call_id,
            payload=ApprovalAsk(
                tool_name=tool.name, server=tool.server, args=call.args, audit_id=audit.id
            ),
            status="pending",
            expires_at=expires,
        )
        await self.store.add_pending(pending)
        return ev.ApprovalRequested(
            tool_call_id=call.tool_call_id,
            tool_name=tool.name,
            args=call.args,
            approval_id=pending.id,
            expires_at=expires.isoformat(),
            server=tool.server,
        )

    def _audit_row(
        self,
        turn: PreparedTurn,
        call: ev.ToolCallReady,
        tool: Tool | None,
        *,
        status: str,
        **values: Any,
    ) -> ToolCall:
        row = ToolCall(
            id=new_id("tc"),
            tool_call_id=call.tool_call_id,
            run_id=turn.run_id,
            conversation_id=turn.conversation_id,
            message_id=turn.message_id,
            user_id=turn.user_id,
            tool_name=call.tool_name,
            server=tool.server if tool else None,
            arguments=call.args,
            result=None,  # JSON null until the call ends: the column is NOT NULL
            status=status,
            read_only=tool.read_only if tool else True,
            created_at=utcnow(),
        )
        return dataclasses.replace(row, **values)

    async def _audit_rejected(
        self, turn: PreparedTurn, call: ev.ToolCallReady, tool: Tool | None, problem: str
    ) -> None:
        now = utcnow()
        row = self._audit_row(
            turn,
            call,
            tool,
            status="failed",
            error=problem,
            read_only=True,
            started_at=now,
            finished_at=now,
        )
        await self.store.record_tool_call(row)

    async def _run_all(
        self,
        turn: PreparedTurn,
        calls: list[tuple[ev.ToolCallReady, Tool]],
        *,
        approved_by: str | None,
        audit_ids: dict[str, str] | None = None,
    ) -> AsyncIterator[ev.EngineEvent]:
        if not calls:
            return
        queue: asyncio.Queue[object] = asyncio.Queue()
        audit_ids = audit_ids or {}
        tasks = [
            asyncio.create_task(
                self._run_one(
                    turn, call, tool, queue, approved_by, audit_ids.get(call.tool_call_id)
                )
            )
            for call, tool in calls
        ]
        remaining = len(tasks)
        try:
            while remaining:
                item = await queue.get()
                if item is _DONE:
                    remaining -= 1
                else:
                    yield item  # type: ignore[misc]
        finally:
            for task in tasks:
                task.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.gather(*tasks, return_exceptions=True)

    async def _run_one(
        self,
        turn: PreparedTurn,
        call: ev.ToolCallReady,
        tool: Tool,
        queue: asyncio.Queue[object],
        approved_by: str | None,
        audit_id: str | None = None,
    ) -> None:
        try:
            audit_id = await self._audit_start(turn, call, tool, approved_by, audit_id)
            deadline = Deadline(self.settings.tool_timeout)
            context = self._context(turn, call, tool, queue, deadline)
            event, values = await self._invoke(tool, call, context, deadline)
            await self.store.update_tool_call(
                turn.user_id, audit_id, finished_at=utcnow(), **values
            )
            queue.put_nowait(event)
        finally:
            queue.put_nowait(_DONE)

    async def _audit_start(
        self,
        turn: PreparedTurn,
        call: ev.ToolCallReady,
        tool: Tool,
        approved_by: str | None,
        audit_id: str | None,
    ) -> str:
        """The call's audit row goes to ``running``: the approval's row, or a new one."""
        if audit_id is not None:
            await self.store.update_tool_call(
                turn.user_id, audit_id, status="running", started_at=utcnow()
            )
            return audit_id
        audit = self._audit_row(
            turn, call, tool, status="running", started_at=utcnow(), approved_by=approved_by
        )
        await self.store.record_tool_call(audit)
        return audit.id

    async def _invoke(
        self, tool: Tool, call: ev.ToolCallReady, context: ToolContext, deadline: Deadline
    ) -> tuple[ev.EngineEvent, ToolCallEnd]:
        name, ident = call.tool_name, call.tool_call_id
        try:
            async with deadline.running():
                output: ToolOutput = await tool.call(dict(call.args), context)
        except TimeoutError as exc:
            error = str(exc) or (
                f"the tool did not answer within {self.settings.tool_timeout:g} seconds"
            )
            return ev.ToolFailed(tool_call_id=ident, tool_name=name, error=error), {
                "status": "timed_out",
                "error": error,
            }
        except Exception as exc:
            log.warning("tool_failed", tool=name, error=str(exc), exc_info=True)
            error = _tool_error_text(exc)
            return ev.ToolFailed(tool_call_id=ident, tool_name=name, error=error), {
                "status": "failed",
                "error": error,
            }
        if output.is_error:
            error = output.content if isinstance(output.content, str) else str(output.content)
            return ev.ToolFailed(tool_call_id=ident, tool_name=name, error=error), {
                "status": "failed",
                "error": error,
                "result": output.content,
            }
        return ev.ToolResult(tool_call_id=ident, tool_name=name, result=output.content), {
            "status": "succeeded",
            "result": output.content,
        }

    def _context(
        self,
        turn: PreparedTurn,
        call: ev.ToolCallReady,
        tool: Tool,
        queue: asyncio.Queue[object],
        deadline: Deadline | None = None,
    ) -> ToolContext:
        async def progress(message: str, value: float | None, total: float | None) -> None:
            queue.put_nowait(
                ev.ToolProgress(
                    tool_call_id=call.tool_call_id,
                    tool_name=call.tool_name,
                    message=message,
                    progress=value,
                    total=total,
                )
            )

        async def ask(message: str, schema: dict[str, Any]) -> tuple[str, dict[str, Any] | None]:
            if self.elicit is not None:
                return await self.elicit(message, schema)
            if deadline is None:
                return await self._elicit(turn, call, tool, queue, message, schema)
            async with deadline.paused():
                return await self._elicit(turn, call, tool, queue, message, schema)

        def add_usage(prompt_tokens: int, completion_tokens: int) -> None:
            turn.usage = turn.usage + TokenUsage(
                prompt_tokens=prompt_tokens, completion_tokens=completion_tokens
            )

        return ToolContext(
            user_id=turn.acting_user,
            owner_id=turn.user_id,
            run_id=turn.run_id,
            conversation_id=turn.conversation_id,
            tool_call_id=call.tool_call_id,
            elicit=ask,
            progress=progress,
            message_id=turn.message_id,
            add_usage=add_usage,
        )

    async def _elicit(
        self,
        turn: PreparedTurn,
        call: ev.ToolCallReady,
        tool: Tool,
        queue: asyncio.Queue[object],
        message: str,
        schema: dict[str, Any],
    ) -> tuple[str, dict[str, Any] | None]:
        """A server asked the person something: store it, show it, wait for the answer."""
        expires = utcnow() + timedelta(seconds=self.settings.approval_timeout)
        pending = PendingInput(
            id=new_id("elic"),
            kind="elicitation",
            run_id=turn.run_id,
            user_id=turn.user_id,
            conversation_id=turn.conversation_id,
            tool_call_id=call.tool_call_id,
            payload=ElicitationAsk(
                message=message, requested_schema=schema, server=tool.server or tool.name
            ),
            status="pending",
            expires_at=expires,
        )
        waiter = self.waiters.expect(pending.id)
        await self.store.add_pending(pending)
        queue.put_nowait(
            ev.ElicitationRequested(
                elicitation_id=pending.id,
                tool_call_id=call.tool_call_id,
                server=tool.server or tool.name,
                message=message,
                requested_schema=schema,
                expires_at=expires.isoformat(),
            )
        )
        try:
            async with asyncio.timeout(self.settings.approval_timeout):
                answer = await waiter
        except TimeoutError:
            await self.store.answer_pending(
                turn.user_id, pending.id, "expired", {"action": "cancel"}
            )
            answer = {"action": "cancel"}
        finally:
            self.waiters.forget(pending.id)
        action = answer.get("action", "cancel")
        queue.put_nowait(ev.ElicitationResolved(elicitation_id=pending.id, action=action))
        return action, answer.get("content")


def _tool_error_text(exc: Exception) -> str:
    """What the model and the client are told; parley's own storage errors stay in the logs."""
    if isinstance(exc, StorageError | OSError):
        return f"the tool failed with an internal error ({type(exc).__name__}); it is logged"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _denial_text(reason: str | None) -> str:
    return f"{DENIED} Reason: {reason}" if reason else DENIED
