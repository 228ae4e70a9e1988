"""``POST /chatkit`` against ``openai-chatkit``'s own types: every request is built with
``chatkit.types`` and every response parsed with them (protocols.md section 4)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from chatkit.types import (
    Action,
    AssistantMessageContentPartAdded,
    AssistantMessageContentPartDone,
    AssistantMessageContentPartTextDelta,
    AssistantMessageItem,
    ClientToolCallItem,
    InferenceOptions,
    ItemsListParams,
    ItemsListReq,
    Page,
    StreamOptionsEvent,
    TaskItem,
    Thread,
    ThreadAddClientToolOutputParams,
    ThreadAddUserMessageParams,
    ThreadCreatedEvent,
    ThreadCreateParams,
    ThreadCustomActionParams,
    ThreadDeleteParams,
    ThreadGetByIdParams,
    ThreadItem,
    ThreadItemAddedEvent,
    ThreadItemDoneEvent,
    ThreadItemReplacedEvent,
    ThreadItemUpdatedEvent,
    ThreadListParams,
    ThreadRetryAfterItemParams,
    ThreadsAddClientToolOutputReq,
    ThreadsAddUserMessageReq,
    ThreadsCreateReq,
    ThreadsCustomActionReq,
    ThreadsDeleteReq,
    ThreadsGetByIdReq,
    ThreadsListReq,
    ThreadsRetryAfterItemReq,
    ThreadStreamEvent,
    ThreadsUpdateReq,
    ThreadUpdateParams,
    UserMessageInput,
    UserMessageItem,
    UserMessageTextContent,
    WidgetItem,
)
from pydantic import BaseModel, TypeAdapter
from tests.conftest import Live

from parley.tools.base import FunctionTool, ToolContext
from parley.tools.registry import ToolRegistry

EVENTS: TypeAdapter[ThreadStreamEvent] = TypeAdapter(ThreadStreamEvent)
THREAD_PAGE: TypeAdapter[Page[Thread]] = TypeAdapter(Page[Thread])
ITEM_PAGE: TypeAdapter[Page[ThreadItem]] = TypeAdapter(Page[ThreadItem])


def said(text: str) -> UserMessageInput:
    return UserMessageInput(
        content=[UserMessageTextContent(text=text)],
        attachments=[],
        inference_options=InferenceOptions(),
    )


async def post(http: httpx.AsyncClient, request: BaseModel) -> httpx.Response:
    body = request.model_dump_json(by_alias=True, exclude_none=True)
    return await http.post("/chatkit", content=body, headers={"content-type": "application/json"})


async def stream(http: httpx.AsyncClient, request: BaseModel) -> list[ThreadStreamEvent]:
    response = await post(http, request)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    blocks = [b for b in response.text.split("\n\n") if b]
    assert all(b.startswith("data: ") and "\n" not in b for b in blocks), blocks
    return [EVENTS.validate_json(b.removeprefix("data: ")) for b in blocks]


def shape(events: list[ThreadStreamEvent]) -> list[str]:
    """Each event's type, with the item type or the update type it carries."""
    out = []
    for e in events:
        if isinstance(e, ThreadItemAddedEvent | ThreadItemDoneEvent | ThreadItemReplacedEvent):
            out.append(f"{e.type}:{e.item.type}")
        elif isinstance(e, ThreadItemUpdatedEvent):
            out.append(f"{e.type}:{e.update.type}")
        else:
            out.append(e.type)
    return out


async def new_thread(live: Live, http: httpx.AsyncClient, text: str = "hi") -> str:
    live.scripted.enqueue([{"text": "ok"}])
    events = await stream(http, ThreadsCreateReq(params=ThreadCreateParams(input=said(text))))
    assert isinstance(events[0], ThreadCreatedEvent)
    return events[0].thread.id


async def test_a_new_thread_streams_its_reply_in_chatkits_order(live: Live) -> None:
    live.scripted.enqueue([{"text": "Hel"}, {"text": "lo"}])
    async with live.client() as http:
        events = await stream(http, ThreadsCreateReq(params=ThreadCreateParams(input=said("hi"))))
    assert shape(events) == [
        "thread.created",
        "thread.item.done:user_message",
        "stream_options",
        "thread.item.added:assistant_message",
        "thread.item.updated:assistant_message.content_part.added",
        "thread.item.updated:assistant_message.content_part.text_delta",
        "thread.item.updated:assistant_message.content_part.text_delta",
        "thread.item.updated:assistant_message.content_part.done",
        "thread.item.done:assistant_message",
    ]
    created, user_done, options, added, *updates, done = events
    assert isinstance(created, ThreadCreatedEvent) and created.thread.id.startswith("conv_")
    assert isinstance(user_done, ThreadItemDoneEvent)
    assert isinstance(user_done.item, UserMessageItem)
    assert user_done.item.content == [UserMessageTextContent(text="hi")]
    assert isinstance(options, StreamOptionsEvent)
    assert isinstance(added, ThreadItemAddedEvent) and isinstance(done, ThreadItemDoneEvent)
    deltas = [
        u.update.delta
        for u in updates
        if isinstance(u, ThreadItemUpdatedEvent)
        if isinstance(u.update, AssistantMessageContentPartTextDelta)
    ]
    assert deltas == ["Hel", "lo"]
    assert all(
        isinstance(u, ThreadItemUpdatedEvent) and u.item_id == added.item.id for u in updates
    )
    final = updates[-1]
    assert isinstance(final, ThreadItemUpdatedEvent)
    assert isinstance(final.update, AssistantMessageContentPartDone)
    assert isinstance(updates[0], ThreadItemUpdatedEvent)
    assert isinstance(updates[0].update, AssistantMessageContentPartAdded)
    assert isinstance(done.item, AssistantMessageItem) and done.item.id == added.item.id
    assert done.item.content[0].text == "Hello"
    assert done.item.thread_id == created.thread.id
    [asked] = live.scripted.requests
    assert [m.content for m in asked.messages if m.role == "user"] == ["hi"]


async def test_a_second_message_then_items_and_the_thread_read_back(live: Live) -> None:
    async with live.client() as http:
        thread_id = await new_thread(live, http)
        live.scripted.enqueue([{"text": "Second."}])
        events = await stream(
            http,
            ThreadsAddUserMessageReq(
                params=ThreadAddUserMessageParams(thread_id=thread_id, input=said("again"))
            ),
        )
        assert shape(events)[:2] == ["thread.item.done:user_message", "stream_options"]
        assert "thread.created" not in shape(events)
        newest = ITEM_PAGE.validate_json(
            (
                await post(http, ItemsListReq(params=ItemsListParams(thread_id=thread_id, limit=3)))
            ).text
        )
        rest = ITEM_PAGE.validate_json(
            (
                await post(
                    http,
                    ItemsListReq(
                        params=ItemsListParams(thread_id=thread_id, limit=3, after=newest.after)
                    ),
                )
            ).text
        )
        got = Thread.model_validate_json(
            (
                await post(http, ThreadsGetByIdReq(params=ThreadGetByIdParams(thread_id=thread_id)))
            ).text
        )
    texts = [_text(i) for i in newest.data]
    assert texts == ["Second.", "again", "ok"] and newest.has_more and newest.after
    assert [_text(i) for i in rest.data] == ["hi"] and not rest.has_more
    assert [_text(i) for i in got.items.data] == ["hi", "ok", "again", "Second."]
    assert got.id == thread_id and got.status.type == "active"
    streamed = [e.item.id for e in events if isinstance(e, ThreadItemDoneEvent)]
    assert streamed == [i.id for i in newest.data[:2]][::-1]


def _text(item: ThreadItem) -> str:
    if isinstance(item, UserMessageItem):
        return "".join(c.text for c in item.content if isinstance(c, UserMessageTextContent))
    assert isinstance(item, AssistantMessageItem), item
    return "".join(c.text for c in item.content)


async def test_threads_list_pages_with_after_limit_and_order(live: Live) -> None:
    async with live.client() as http:
        made = [await new_thread(live, http, f"t{i}") for i in range(3)]

        async def page(**params: Any) -> Page[Thread]:
            response = await post(http, ThreadsListReq(params=ThreadListParams(**params)))
            assert response.status_code == 200, response.text
            return THREAD_PAGE.validate_json(response.text)

        first = await page(limit=2)
        second = await page(limit=2, after=first.after)
        oldest = await page(limit=2, order="asc")
        everything = await page()
    assert [t.id for t in first.data] == made[::-1][:2] and first.has_more
    assert [t.id for t in second.data] == made[:1] and not second.has_more
    assert [t.id for t in oldest.data] == made[:2] and oldest.has_more
    assert [t.id for t in everything.data] == made[::-1]


async def test_update_renames_and_delete_removes_the_thread(live: Live) -> None:
    async with live.client() as http:
        thread_id = await new_thread(live, http)
        renamed = await post(
            http, ThreadsUpdateReq(params=ThreadUpdateParams(thread_id=thread_id, title="Trip"))
        )
        assert Thread.model_validate_json(renamed.text).title == "Trip"
        stored = await live.services.store.get_conversation("alice", thread_id)
        assert stored.title == "Trip"
        deleted = await post(http, ThreadsDeleteReq(params=ThreadDeleteParams(thread_id=thread_id)))
        assert (deleted.status_code, deleted.json()) == (200, {})
        gone = await post(http, ThreadsGetByIdReq(params=ThreadGetByIdParams(thread_id=thread_id)))
    assert gone.status_code == 404


async def test_an_unknown_or_another_users_thread_is_not_found(live: Live) -> None:
    async with live.client() as http:
        thread_id = await new_thread(live, http)
    before = await live.services.store.get_conversation("alice", thread_id)
    requests: list[BaseModel] = [
        ThreadsGetByIdReq(params=ThreadGetByIdParams(thread_id=thread_id)),
        ThreadsAddUserMessageReq(
            params=ThreadAddUserMessageParams(thread_id=thread_id, input=said("mine now"))
        ),
        ItemsListReq(params=ItemsListParams(thread_id=thread_id)),
        ThreadsUpdateReq(params=ThreadUpdateParams(thread_id=thread_id, title="bob's")),
        ThreadsDeleteReq(params=ThreadDeleteParams(thread_id=thread_id)),
    ]
    async with live.client("bob") as http:
        for request in requests:
            response = await post(http, request)
            assert response.status_code == 404, response.text
            assert response.json()["error"]["code"] == "ERR_NOT_FOUND"
        listed = THREAD_PAGE.validate_json(
            (await post(http, ThreadsListReq(params=ThreadListParams()))).text
        )
        unknown = await post(
            http, ThreadsGetByIdReq(params=ThreadGetByIdParams(thread_id="conv_nope"))
        )
    assert listed.data == [] and unknown.status_code == 404
    assert await live.services.store.get_conversation("alice", thread_id) == before


async def test_a_body_that_is_no_chatkit_request_is_a_400(live: Live) -> None:
    async with live.client() as http:
        response = await http.post("/chatkit", json={"type": "threads.nope", "params": {}})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "ERR_VALIDATION"


async def test_retry_after_item_regenerates_the_reply_to_that_message(live: Live) -> None:
    async with live.client() as http:
        thread_id = await new_thread(live, http)
        before = ITEM_PAGE.validate_json(
            (await post(http, ItemsListReq(params=ItemsListParams(thread_id=thread_id)))).text
        )
        reply, asked = before.data
        live.scripted.enqueue([{"text": "Better."}])
        events = await stream(
            http,
            ThreadsRetryAfterItemReq(
                params=ThreadRetryAfterItemParams(thread_id=thread_id, item_id=asked.id)
            ),
        )
        after = ITEM_PAGE.validate_json(
            (await post(http, ItemsListReq(params=ItemsListParams(thread_id=thread_id)))).text
        )
    assert shape(events)[0] == "stream_options"
    assert "thread.item.done:user_message" not in shape(events)
    assert [_text(i) for i in after.data] == ["Better.", "hi"]
    assert after.data[1].id == asked.id and after.data[0].id != reply.id


WEATHER = {
    "name": "get_location",
    "description": "Where the user is",
    "parameters": {"type": "object", "properties": {}},
}


async def test_a_client_tool_call_is_answered_with_add_client_tool_output(live: Live) -> None:
    call = {"tool_call": {"name": "get_location", "arguments": {}, "id": "call_1"}}
    live.scripted.enqueue([call], [{"text": "You are in Paris."}])
    metadata = {"client_tools": [WEATHER]}
    async with live.client() as http:
        events = await stream(
            http,
            ThreadsCreateReq(
                params=ThreadCreateParams(input=said("where am I")), metadata=metadata
            ),
        )
        [pending] = [
            e.item
            for e in events
            if isinstance(e, ThreadItemDoneEvent)
            if isinstance(e.item, ClientToolCallItem)
        ]
        thread_id = pending.thread_id
        listed = ITEM_PAGE.validate_json(
            (await post(http, ItemsListReq(params=ItemsListParams(thread_id=thread_id)))).text
        )
        answered = await stream(
            http,
            ThreadsAddClientToolOutputReq(
                params=ThreadAddClientToolOutputParams(
                    thread_id=thread_id, result={"city": "Paris"}
                ),
                metadata=metadata,
            ),
        )
        again = await post(
            http,
            ThreadsAddClientToolOutputReq(
                params=ThreadAddClientToolOutputParams(thread_id=thread_id, result={}),
            ),
        )
    assert (pending.status, pending.name, pending.call_id) == ("pending", "get_location", "call_1")
    assert isinstance(listed.data[0], ClientToolCallItem) and listed.data[0].id == pending.id
    assert shape(answered)[0] == "stream_options"
    done = [e.item for e in answered if isinstance(e, ThreadItemDoneEvent)]
    assert [_text(i) for i in done] == ["You are in Paris."]
    tool_message = live.scripted.requests[-1].messages[-1]
    assert tool_message.role == "tool" and "Paris" in str(tool_message.content)
    assert again.status_code == 409


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"approvals": "all", "approval_timeout": 600.0}


@pytest.fixture
def tool_registry() -> ToolRegistry:
    async def echo(args: dict[str, Any], context: ToolContext) -> dict[str, Any]:
        return {"echo": args}

    registry = ToolRegistry()
    registry.register(FunctionTool("echo", echo, server="toy", requires_approval=True))
    return registry


async def test_an_approval_is_a_widget_whose_action_continues_the_reply(live: Live) -> None:
    call = {"tool_call": {"name": "echo", "arguments": {"x": 1}, "id": "tc_1"}}
    live.scripted.enqueue([call], [{"text": "Echoed."}])
    async with live.client() as http:
        asked = await stream(
            http, ThreadsCreateReq(params=ThreadCreateParams(input=said("echo it")))
        )
        [widget] = [
            e.item
            for e in asked
            if isinstance(e, ThreadItemDoneEvent)
            if isinstance(e.item, WidgetItem)
        ]
        confirm = widget.widget.model_dump()["confirm"]["action"]
        action = Action[str, Any](type=confirm["type"], payload=confirm["payload"])
        answered = await stream(
            http,
            ThreadsCustomActionReq(
                params=ThreadCustomActionParams(
                    thread_id=widget.thread_id, item_id=widget.id, action=action
                )
            ),
        )
        twice = await post(
            http,
            ThreadsCustomActionReq(
                params=ThreadCustomActionParams(thread_id=widget.thread_id, action=action)
            ),
        )
    assert confirm["payload"] == {"tool_call_id": "tc_1", "approved": True}
    assert shape(answered) == [
        "stream_options",
        "thread.item.replaced:task",
        "thread.item.added:assistant_message",
        "thread.item.updated:assistant_message.content_part.added",
        "thread.item.updated:assistant_message.content_part.text_delta",
        "thread.item.updated:assistant_message.content_part.done",
        "thread.item.done:assistant_message",
    ]
    replaced = answered[1]
    assert isinstance(replaced, ThreadItemReplacedEvent) and isinstance(replaced.item, TaskItem)
    assert replaced.item.id == widget.id and '"x": 1' in str(replaced.item.task.model_dump())
    assert twice.status_code == 409
