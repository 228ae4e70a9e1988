"""The progress socket's messages: what an agent is doing, as JSON objects over a WebSocket.

Every message has the keys ``event_type, tool, task_id, message, count, result, error`` (unused
ones are null), the todo app's progress event. A message about a run also has ``run_id``,
``conversation_id`` and ``event_id`` (``"{run_id}:{seq}"``, the run's event number: give the last
one seen as ``?last_event_id=`` when reconnecting):

- ``connection_established``: the socket is ready (``message`` greets, ``result`` is the user id,
  ``conversation_id`` the conversation the URL named, when it named one);
- ``agent_thinking``: a run started;
- ``tool_starting`` (``args``), ``tool_progress`` (``progress``, ``total``), ``tool_complete``
  (``result``), ``tool_error`` (``error``): one tool call; ``count`` numbers the calls of the run,
  except on ``tool_progress``, where it is the items found so far (``list_tasks`` reports how
  many tasks it found); ``tool_complete`` of a task tool has the task's id as ``task_id``;
- ``approval_required`` (``tool_call_id``, ``args``): a tool waits for approval
  (answer with ``POST /api/runs/{run_id}/approvals/{tool_call_id}``);
- ``agent_done``: the run ended; ``response`` (and ``result``) is the reply text, ``count`` the
  number of tool calls, ``error`` the failure if it failed, ``message_id`` the stored reply;
- ``error``: a message the client sent (or the URL) could not be handled.
"""

from __future__ import annotations

from typing import Any

from parley.chat import events as ev

# the todo tools whose result is one task (or a deleted task's id), as MCP or in process
TASK_TOOLS = frozenset({"add_task", "update_task", "complete_task", "delete_task"})
KEYS = ("tool", "task_id", "message", "count", "result", "error")


def message(event_type: str, **fields: Any) -> dict[str, Any]:
    return {"event_type": event_type, **dict.fromkeys(KEYS), **fields}


def connection_established(user_id: str, conversation_id: str | None = None) -> dict[str, Any]:
    named = {"conversation_id": conversation_id} if conversation_id is not None else {}
    return message("connection_established", message="connected", result=user_id, **named)


def task_id(tool_name: str, result: Any) -> str | None:
    """The id of the task a task tool acted on, as the todo app's progress event types it."""
    if tool_name.rpartition("__")[2] not in TASK_TOOLS or not isinstance(result, dict):
        return None
    value = result.get("id")
    return str(value) if isinstance(value, int | str) and not isinstance(value, bool) else None


def client_error(text: str, code: str = "ERR_VALIDATION") -> dict[str, Any]:
    return message("error", message=text, error={"code": code, "message": text})


class ProgressEncoder:
    """One run's engine events as progress messages (stateful: counts tools, gathers text)."""

    def __init__(self, *, run_id: str, conversation_id: str) -> None:
        self.run_id = run_id
        self.conversation_id = conversation_id
        self.count = 0
        self._text: list[str] = []

    def _message(self, event_type: str, **fields: Any) -> dict[str, Any]:
        return message(
            event_type, run_id=self.run_id, conversation_id=self.conversation_id, **fields
        )

    def encode(self, event: ev.EngineEvent) -> list[dict[str, Any]]:
        match event:
            case ev.RunStarted():
                return [self._message("agent_thinking", message="thinking", count=0)]
            case ev.TextDelta():
                self._text.append(event.content)
            case ev.ToolCallReady():
                self.count += 1
                return [
                    self._message(
                        "tool_starting",
                        tool=event.tool_name,
                        message=f"running {event.tool_name}",
                        count=self.count,
                        args=event.args,
                        tool_call_id=event.tool_call_id,
                    )
                ]
            case ev.ToolProgress() if event.tool_call_id:
                return [
                    self._message(
                        "tool_progress",
                        tool=event.tool_name,
                        message=event.message,
                        count=None if event.progress is None else int(event.progress),
                        progress=event.progress,
                        total=event.total,
                        tool_call_id=event.tool_call_id,
                    )
                ]
        return self._outcomes(event)

    def _outcomes(self, event: ev.EngineEvent) -> list[dict[str, Any]]:
        match event:
            case ev.ToolResult():
                return [
                    self._message(
                        "tool_complete",
                        tool=event.tool_name,
                        task_id=task_id(event.tool_name, event.result),
                        message=f"{event.tool_name} finished",
                        count=self.count,
                        result=event.result,
                        tool_call_id=event.tool_call_id,
                    )
                ]
            case ev.ToolFailed():
                return [
                    self._message(
                        "tool_error",
                        tool=event.tool_name,
                        message=f"{event.tool_name} failed",
                        count=self.count,
                        error=event.error,
                        tool_call_id=event.tool_call_id,
                    )
                ]
            case ev.ApprovalRequested():
                return [
                    self._message(
                        "approval_required",
                        tool=event.tool_name,
                        message=f"{event.tool_name} needs approval",
                        count=self.count,
                        args=event.args,
                        tool_call_id=event.tool_call_id,
                    )
                ]
        return self._done(event)

    def _done(self, event: ev.EngineEvent) -> list[dict[str, Any]]:
        text = "".join(self._text)
        match event:
            case ev.RunFinished():
                return [
                    self._message(
                        "agent_done",
                        message=text,
                        count=self.count,
                        result=text,
                        response=text,
                        message_id=event.message_id,
                        finish_reason=event.finish_reason,
                    )
                ]
            case ev.RunFailed():
                return [
                    self._message(
                        "agent_done",
                        message=event.message,
                        count=self.count,
                        result=text,
                        response=text,
                        error={"code": event.code, "message": event.message},
                        message_id=event.message_id,
                    )
                ]
        return []
