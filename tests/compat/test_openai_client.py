"""The official ``openai`` Python client against a live parley's ``/v1``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest
from openai import AsyncOpenAI
from tests.conftest import Live, token

from parley.providers.scripted import ScriptedProvider
from parley.tools.base import FunctionTool, ToolContext
from parley.tools.registry import ToolRegistry

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


@pytest.fixture
async def client(live: Live) -> AsyncIterator[AsyncOpenAI]:
    async with AsyncOpenAI(
        base_url=f"{live.url}/v1", api_key=token("alice"), max_retries=0, timeout=10
    ) as client:
        yield client


def add_task(registry: ToolRegistry) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []

    async def run(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
        calls.append({**args, "user": ctx.user_id})
        return {"id": 1, "title": args["title"]}

    schema = {"type": "object", "properties": {"title": {"type": "string"}}, "required": ["title"]}
    registry.register(FunctionTool("add_task", run, input_schema=schema))
    return calls


async def test_models_lists_provider_models_and_profiles(client: AsyncOpenAI) -> None:
    ids = [m.id async for m in client.models.list()]
    assert "scripted/demo" in ids
    assert {"profile/todo", "profile/generalist"} <= set(ids)
    assert (await client.models.retrieve("scripted/demo")).owned_by == "scripted"


async def test_a_completion_answers_and_keeps_the_exchange_in_an_openai_conversation(
    live: Live, client: AsyncOpenAI, scripted: ScriptedProvider
) -> None:
    scripted.enqueue([{"text": "Paris."}, {"usage": {"prompt_tokens": 9, "completion_tokens": 2}}])
    raw = await client.chat.completions.with_raw_response.create(
        model="scripted/demo",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Capital of France?"},
            {"role": "assistant", "content": "Which France?"},
            {"role": "user", "content": "The country."},
        ],
    )
    completion = raw.parse()
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content == "Paris."
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.total_tokens == 11
    sent = scripted.requests[0].messages
    assert [(m.role, m.content) for m in sent] == [
        ("system", "Be brief."),
        ("user", "Capital of France?"),
        ("assistant", "Which France?"),
        ("user", "The country."),
    ]
    assert scripted.requests[0].tools == []
    convo = await live.services.store.get_conversation(
        "alice", raw.headers["x-parley-conversation"]
    )
    assert convo.metadata_ == {"source": "openai"}


async def test_a_stream_sends_content_deltas_then_usage(
    client: AsyncOpenAI, scripted: ScriptedProvider
) -> None:
    scripted.enqueue(
        [{"text": ["Hel", "lo"]}, {"usage": {"prompt_tokens": 3, "completion_tokens": 2}}]
    )
    stream = await client.chat.completions.create(
        model="scripted/demo",
        messages=[{"role": "user", "content": "Hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 5
    assert len({c.id for c in chunks}) == 1


async def test_the_wire_has_only_data_lines(live: Live, scripted: ScriptedProvider) -> None:
    scripted.enqueue([{"text": "x"}])
    payload = {
        "model": "scripted/demo",
        "messages": [{"role": "user", "content": "Hi"}],
        "stream": True,
    }
    async with (
        live.client() as http,
        http.stream("POST", "/v1/chat/completions", json=payload) as response,
    ):
        body = (await response.aread()).decode()
    lines = [line for line in body.splitlines() if line]
    assert lines and all(line.startswith(("data: ", ":")) for line in lines)
    assert lines[-1] == "data: [DONE]"


async def test_calls_to_the_clients_tools_come_back_to_the_client(
    client: AsyncOpenAI, scripted: ScriptedProvider, tool_registry: ToolRegistry
) -> None:
    add_task(tool_registry)  # a parley tool: not offered to a provider model
    call = {"tool_call": {"name": "get_weather", "arguments": {"city": "Paris"}, "id": "call_1"}}
    scripted.enqueue([call], [{"text": "It is 21C."}])
    question = {"role": "user", "content": "Weather in Paris?"}
    first = await client.chat.completions.create(
        model="scripted/demo",
        messages=[question],
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
    )
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls is not None
    tool_call = choice.message.tool_calls[0]
    assert (tool_call.id, tool_call.function.name, tool_call.function.arguments) == (
        "call_1",
        "get_weather",
        '{"city": "Paris"}',
    )
    assert [t.name for t in scripted.requests[0].tools] == ["get_weather"]
    second = await client.chat.completions.create(
        model="scripted/demo",
        messages=[
            question,
            choice.message.model_dump(exclude_none=True),  # type: ignore[list-item]
            {"role": "tool", "tool_call_id": "call_1", "content": '{"tempC": 21}'},
        ],
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
    )
    assert second.choices[0].message.content == "It is 21C."
    sent = scripted.requests[1].messages
    assert [m.role for m in sent] == ["user", "assistant", "tool"]
    assert sent[1].tool_calls[0].name == "get_weather"
    assert (sent[2].tool_call_id, sent[2].content) == ("call_1", '{"tempC": 21}')


async def test_streamed_tool_calls_assemble_in_the_stream_helper(
    client: AsyncOpenAI, scripted: ScriptedProvider
) -> None:
    call = {"tool_call": {"name": "get_weather", "arguments": {"city": "Paris"}, "id": "call_1"}}
    scripted.enqueue([call])
    async with client.chat.completions.stream(
        model="scripted/demo",
        messages=[{"role": "user", "content": "Weather?"}],
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
    ) as stream:
        final = await stream.get_final_completion()
    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls is not None
    assert choice.message.tool_calls[0].function.name == "get_weather"
    assert choice.message.tool_calls[0].function.arguments == '{"city": "Paris"}'


async def test_a_profile_model_runs_parleys_own_tools(
    client: AsyncOpenAI, scripted: ScriptedProvider, tool_registry: ToolRegistry
) -> None:
    calls = add_task(tool_registry)
    scripted.enqueue(
        [{"tool_call": {"name": "add_task", "arguments": {"title": "milk"}}}],
        [{"text": "Added milk."}],
    )
    completion = await client.chat.completions.create(
        model="profile/todo", messages=[{"role": "user", "content": "Remind me to buy milk"}]
    )
    assert completion.choices[0].message.content == "Added milk."
    assert completion.choices[0].message.tool_calls is None
    assert completion.choices[0].finish_reason == "stop"
    assert calls == [{"title": "milk", "user": "alice"}]
    assert "add_task" in [t.name for t in scripted.requests[0].tools]


async def test_a_named_conversation_keeps_the_exchange_and_its_stored_history_wins(
    live: Live, client: AsyncOpenAI, scripted: ScriptedProvider
) -> None:
    scripted.enqueue([{"text": "one"}], [{"text": "two"}])
    headers = {"X-Parley-Conversation": "my-thread"}
    await client.chat.completions.create(
        model="scripted/demo", messages=[{"role": "user", "content": "a"}], extra_headers=headers
    )
    await client.chat.completions.create(
        model="scripted/demo",
        messages=[
            {"role": "user", "content": "a (edited by the client)"},
            {"role": "assistant", "content": "one"},
            {"role": "user", "content": "b"},
        ],
        extra_headers=headers,
    )
    assert [m.content for m in scripted.requests[1].messages] == ["a", "one", "b"]
    convo = await live.services.store.find_conversation_by_external("alice", "my-thread")
    assert convo is not None
    branch = await live.services.store.branch("alice", convo.id, leaf_id=convo.active_leaf_id)
    assert [m.text for m in branch] == ["a", "one", "b", "two"]


async def test_errors_raise_the_matching_openai_exceptions(
    live: Live, client: AsyncOpenAI, scripted: ScriptedProvider
) -> None:
    user = [{"role": "user", "content": "x"}]
    async with AsyncOpenAI(base_url=f"{live.url}/v1", api_key="not-a-jwt", max_retries=0) as bad:
        with pytest.raises(openai.AuthenticationError) as auth:
            await bad.chat.completions.create(model="scripted/demo", messages=user)  # type: ignore[arg-type]
        with pytest.raises(openai.AuthenticationError):
            await bad.models.list()
    assert auth.value.code == "invalid_api_key"
    assert auth.value.type == "invalid_request_error"
    with pytest.raises(openai.NotFoundError) as unknown:
        await client.chat.completions.create(model="nosuch/model", messages=user)  # type: ignore[arg-type]
    assert unknown.value.code == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        await client.chat.completions.create(model="profile/nosuch", messages=user)  # type: ignore[arg-type]
    with pytest.raises(openai.BadRequestError) as empty:
        await client.chat.completions.create(model="scripted/demo", messages=[])
    assert empty.value.param == "messages"
    scripted.enqueue([{"error": {"code": "ERR_PROVIDER_UNAVAILABLE", "message": "upstream fell"}}])
    stream = await client.chat.completions.create(
        model="scripted/demo",
        messages=user,  # type: ignore[arg-type]
        stream=True,
    )
    with pytest.raises(openai.APIError) as mid_stream:
        async for _ in stream:
            pass
    assert mid_stream.value.code == "ERR_PROVIDER_UNAVAILABLE"
    assert "upstream fell" in mid_stream.value.message


async def test_a_run_waiting_for_approval_is_a_conflict_naming_the_run(
    client: AsyncOpenAI, scripted: ScriptedProvider, tool_registry: ToolRegistry
) -> None:
    async def delete(args: dict[str, Any], ctx: ToolContext) -> str:
        return "deleted"

    tool_registry.register(FunctionTool("delete_task", delete, requires_approval=True))
    scripted.enqueue([{"tool_call": {"name": "delete_task", "id": "call_7"}}])
    with pytest.raises(openai.ConflictError) as waiting:
        await client.chat.completions.create(
            model="profile/todo", messages=[{"role": "user", "content": "delete it"}]
        )
    assert waiting.value.code == "approval_required"
    assert "call_7" in waiting.value.message
    assert waiting.value.response.headers["x-run-id"].startswith("run_")
    assert waiting.value.response.headers["x-should-retry"] == "false"
