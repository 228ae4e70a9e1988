"""The seed dialects (session chat, todo assistant) and the progress socket's messages."""

from __future__ import annotations

from tests.support.frames import frames, wire

from parley.chat import events as ev
from parley.protocols.seeds import SessionChatSSE, TodoChatSSE
from parley.protocols.ws import ProgressEncoder

STARTED = ev.RunStarted(
    run_id="run_1", conversation_id="conv_1", user_message_id="u", message_id="msg_1", model="m"
)
TOOL = [
    ev.ToolCallReady(tool_call_id="c1", tool_name="add_task", args={"title": "milk"}),
    ev.ToolResult(tool_call_id="c1", tool_name="add_task", result={"id": 1}),
]


async def test_session_chat_names_its_events_and_sends_no_ids_and_no_done() -> None:
    events = [
        STARTED,
        *TOOL,
        ev.TextDelta(content="Hi"),
        ev.RunFinished(message_id="msg_1", finish_reason="stop"),
    ]
    written = wire(await frames(SessionChatSSE(session_id="conv_1", run_id="run_1"), events))
    assert "\r" not in written
    assert written == (
        'event: chunk\ndata: {"type":"chunk","content":"Hi"}\n\n'
        'event: complete\ndata: {"type":"complete","content":"Hi","message_id":"msg_1",'
        '"session_id":"conv_1"}\n\n'
    )


async def test_session_chat_errors_and_waits_are_error_events() -> None:
    encoder = SessionChatSSE(session_id="conv_1", run_id="run_1")
    failed = wire(
        await frames(encoder, [ev.RunFailed(message_id="m", code="ERR_X", message="boom")])
    )
    assert "\r" not in failed
    assert failed == (
        'event: error\ndata: {"type":"error","error":{"message":"boom","code":"ERR_X"}}\n\n'
    )
    waiting = wire(await frames(encoder, [ev.RunSuspended(message_id="m", waiting_for=["c1"])]))
    assert "ERR_APPROVAL_REQUIRED" in waiting and "/api/runs/run_1/approvals/" in waiting


async def test_the_todo_stream_is_unnamed_data_with_tool_calls_and_a_done() -> None:
    events = [
        STARTED,
        *TOOL,
        ev.TextDelta(content="Added."),
        ev.RunFinished(message_id="msg_1", finish_reason="stop"),
    ]
    written = wire(await frames(TodoChatSSE(conversation_id="conv_1", run_id="run_1"), events))
    assert "\r" not in written
    assert written == (
        'data: {"type":"tool_call","tool_name":"add_task","args":{"title":"milk"}}\n\n'
        'data: {"type":"tool_result","tool_name":"add_task","result":{"id":1}}\n\n'
        'data: {"type":"chunk","content":"Added."}\n\n'
        'data: {"type":"done","message_id":"msg_1","conversation_id":"conv_1","content":"Added."}\n\n'
    )


def test_progress_messages_follow_a_run() -> None:
    encoder = ProgressEncoder(run_id="run_1", conversation_id="conv_1")
    events = [
        STARTED,
        TOOL[0],
        ev.ToolProgress(
            tool_call_id="c1", tool_name="add_task", message="saving", progress=1, total=2
        ),
        TOOL[1],
        ev.ToolFailed(tool_call_id="c2", tool_name="list_tasks", error="gone"),
        ev.TextDelta(content="Done."),
        ev.RunFinished(message_id="msg_1", finish_reason="stop"),
    ]
    out = [m for e in events for m in encoder.encode(e)]
    base = {"run_id": "run_1", "conversation_id": "conv_1"}
    assert out == [
        {
            "event_type": "agent_thinking",
            "task_id": None,
            "tool": None,
            "message": "thinking",
            "count": 0,
            "result": None,
            "error": None,
            **base,
        },
        {
            "event_type": "tool_starting",
            "task_id": None,
            "tool": "add_task",
            "message": "running add_task",
            "count": 1,
            "result": None,
            "error": None,
            "args": {"title": "milk"},
            "tool_call_id": "c1",
            **base,
        },
        {
            "event_type": "tool_progress",
            "task_id": None,
            "tool": "add_task",
            "message": "saving",
            "count": 1,
            "result": None,
            "error": None,
            "progress": 1.0,
            "total": 2.0,
            "tool_call_id": "c1",
            **base,
        },
        {
            "event_type": "tool_complete",
            "task_id": "1",
            "tool": "add_task",
            "message": "add_task finished",
            "count": 1,
            "result": {"id": 1},
            "error": None,
            "tool_call_id": "c1",
            **base,
        },
        {
            "event_type": "tool_error",
            "task_id": None,
            "tool": "list_tasks",
            "message": "list_tasks failed",
            "count": 1,
            "result": None,
            "error": "gone",
            "tool_call_id": "c2",
            **base,
        },
        {
            "event_type": "agent_done",
            "task_id": None,
            "tool": None,
            "message": "Done.",
            "count": 1,
            "result": "Done.",
            "response": "Done.",
            "error": None,
            "message_id": "msg_1",
            "finish_reason": "stop",
            **base,
        },
    ]
