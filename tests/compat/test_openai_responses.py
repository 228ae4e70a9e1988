"""The official ``openai`` Python client's ``responses`` API against a live parley's ``/v1``."""

from __future__ import annotations

import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import openai
import pytest
from openai import AsyncOpenAI
from tests.compat.test_vercel_clients import run_node
from tests.conftest import Live, token

from parley.providers.scripted import ScriptedProvider
from parley.tools.base import FunctionTool, ToolContext
from parley.tools.registry import ToolRegistry

WEATHER_TOOL: Any = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}
WEATHER_CALL = {
    "tool_call": {"name": "get_weather", "arguments": {"city": "Paris"}, "id": "call_1"}
}
TEXT_EVENTS = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
    "response.output_text.delta",
    "response.output_text.delta",
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
]


@pytest.fixture
async def client(live: Live) -> AsyncIterator[AsyncOpenAI]:
    async with AsyncOpenAI(
        base_url=f"{live.url}/v1", api_key=token("alice"), max_retries=0, timeout=10
    ) as client:
        yield client


def sent(scripted: ScriptedProvider, index: int) -> list[tuple[str, str]]:
    """The role and text of each message the model got in its ``index``-th call."""
    return [(m.role, str(m.content)) for m in scripted.requests[index].messages]


async def test_a_response_answers_with_its_text_usage_and_instructions(
    live: Live, client: AsyncOpenAI, scripted: ScriptedProvider
) -> None:
    scripted.enqueue([{"text": "Paris."}, {"usage": {"prompt_tokens": 9, "completion_tokens": 2}}])
    raw = await client.responses.with_raw_response.create(
        model="scripted/demo", instructions="Be brief.", input="Capital of France?"
    )
    response = raw.parse()
    assert response.id.startswith("resp_") and response.object == "response"
    assert (response.status, response.output_text, response.instructions) == (
        "completed",
        "Paris.",
        "Be brief.",
    )
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens) == (9, 2)
    assert response.usage.total_tokens == 11
    assert [item.type for item in response.output] == ["message"]
    assert sent(scripted, 0) == [("system", "Be brief."), ("user", "Capital of France?")]
    assert raw.headers["x-run-id"] == "run_" + response.id.removeprefix("resp_")
    convo = await live.services.store.get_conversation(
        "alice", raw.headers["x-parley-conversation"]
    )
    assert convo.metadata_ == {"source": "openai"}


async def test_the_stream_helper_accepts_the_event_sequence_and_finds_the_final_response(
    client: AsyncOpenAI, scripted: ScriptedProvider
) -> None:
    scripted.enqueue(
        [{"text": ["Hel", "lo"]}, {"usage": {"prompt_tokens": 3, "completion_tokens": 2}}]
    )
    async with client.responses.stream(model="scripted/demo", input="Hi") as stream:
        events = [event async for event in stream]
        final = await stream.get_final_response()
    assert [e.type for e in events] == TEXT_EVENTS
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert [e.delta for e in events if e.type == "response.output_text.delta"] == ["Hel", "lo"]
    assert final.output_text == "Hello" and final.status == "completed"
    assert final.usage is not None and final.usage.total_tokens == 5
    assert final.id == events[0].response.id  # type: ignore[union-attr]


async def test_the_wire_names_each_event_and_sends_no_done(
    live: Live, scripted: ScriptedProvider
) -> None:
    scripted.enqueue([{"text": "x"}])
    payload = {"model": "scripted/demo", "input": "Hi", "stream": True}
    async with (
        live.client() as http,
        http.stream("POST", "/v1/responses", json=payload) as response,
    ):
        body = (await response.aread()).decode()
    blocks = [block.splitlines() for block in body.split("\n\n") if block.strip()]
    assert all(len(b) == 2 and b[0].startswith("event: ") for b in blocks), blocks
    assert all(json.loads(b[1].removeprefix("data: "))["type"] == b[0][7:] for b in blocks)
    assert blocks[-1][0] == "event: response.completed"
    assert "[DONE]" not in body


async def test_a_function_call_round_trip_continues_from_the_previous_response(
    client: AsyncOpenAI, scripted: ScriptedProvider, tool_registry: ToolRegistry
) -> None:
    scripted.enqueue([WEATHER_CALL], [{"text": "It is 21C."}])
    first = await client.responses.create(
        model="scripted/demo", input="Weather in Paris?", tools=[WEATHER_TOOL]
    )
    call = first.output[-1]
    assert call.type == "function_call"
    assert (call.call_id, call.name, json.loads(call.arguments)) == (
        "call_1",
        "get_weather",
        {"city": "Paris"},
    )
    assert [t.name for t in scripted.requests[0].tools] == ["get_weather"]
    second = await client.responses.create(
        model="scripted/demo",
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": "call_1", "output": '{"tempC": 21}'}],
        tools=[WEATHER_TOOL],
    )
    assert second.output_text == "It is 21C."
    assert second.previous_response_id == first.id
    messages = scripted.requests[1].messages
    assert [m.role for m in messages] == ["user", "assistant", "tool"]
    assert messages[1].tool_calls[0].name == "get_weather"
    assert (messages[2].tool_call_id, messages[2].content) == ("call_1", '{"tempC": 21}')


async def test_a_client_that_holds_the_history_sends_the_output_items_back(
    client: AsyncOpenAI, scripted: ScriptedProvider
) -> None:
    scripted.enqueue([{"text": "Let me look."}, WEATHER_CALL], [{"text": "It is 21C."}])
    question: Any = {"role": "user", "content": "Weather in Paris?"}
    first = await client.responses.create(
        model="scripted/demo", input=[question], tools=[WEATHER_TOOL]
    )
    assert [item.type for item in first.output] == ["message", "function_call"]
    answer: Any = {"type": "function_call_output", "call_id": "call_1", "output": "21C"}
    items: Any = [question, *[i.model_dump(exclude_none=True) for i in first.output], answer]
    second = await client.responses.create(model="scripted/demo", input=items, tools=[WEATHER_TOOL])
    assert second.output_text == "It is 21C."
    assert sent(scripted, 1) == [
        ("user", "Weather in Paris?"),
        ("assistant", "Let me look."),
        ("tool", "21C"),
    ]


async def test_a_streamed_function_call_assembles_in_the_stream_helper(
    client: AsyncOpenAI, scripted: ScriptedProvider
) -> None:
    scripted.enqueue([WEATHER_CALL])
    async with client.responses.stream(
        model="scripted/demo", input="Weather?", tools=[WEATHER_TOOL]
    ) as stream:
        types = [event.type async for event in stream]
        final = await stream.get_final_response()
    assert "response.function_call_arguments.delta" in types
    assert types[-2:] == ["response.output_item.done", "response.completed"]
    call = final.output[0]
    assert call.type == "function_call" and json.loads(call.arguments) == {"city": "Paris"}


async def test_previous_response_id_continues_its_conversation_and_can_branch_from_an_older_one(
    live: Live, client: AsyncOpenAI, scripted: ScriptedProvider
) -> None:
    scripted.enqueue([{"text": "one"}], [{"text": "two"}], [{"text": "other"}])
    first = await client.responses.create(model="scripted/demo", input="a")
    second = await client.responses.create(
        model="scripted/demo", input="b", previous_response_id=first.id
    )
    assert sent(scripted, 1) == [("user", "a"), ("assistant", "one"), ("user", "b")]
    await client.responses.create(model="scripted/demo", input="c", previous_response_id=first.id)
    assert sent(scripted, 2) == [("user", "a"), ("assistant", "one"), ("user", "c")]
    runs = live.services.store
    one = await runs.get_run("alice", "run_" + first.id.removeprefix("resp_"))
    two = await runs.get_run("alice", "run_" + second.id.removeprefix("resp_"))
    assert one.conversation_id == two.conversation_id


async def test_a_response_is_retrieved_by_its_owner_only(
    live: Live, client: AsyncOpenAI, scripted: ScriptedProvider
) -> None:
    scripted.enqueue([{"text": "Paris."}, {"usage": {"prompt_tokens": 4, "completion_tokens": 1}}])
    created = await client.responses.create(model="scripted/demo", input="Capital?")
    got = await client.responses.retrieve(created.id)
    assert (got.id, got.status, got.output_text) == (created.id, "completed", "Paris.")
    assert got.usage is not None and got.usage.total_tokens == 5
    async with AsyncOpenAI(base_url=f"{live.url}/v1", api_key=token("bob"), max_retries=0) as bob:
        with pytest.raises(openai.NotFoundError):
            await bob.responses.retrieve(created.id)
        with pytest.raises(openai.BadRequestError) as foreign:
            await bob.responses.create(
                model="scripted/demo", input="x", previous_response_id=created.id
            )
    assert foreign.value.param == "previous_response_id"
    with pytest.raises(openai.NotFoundError):
        await client.responses.retrieve("not-a-response")


async def test_a_background_response_runs_on_and_cancel_stops_it(
    client: AsyncOpenAI, scripted: ScriptedProvider
) -> None:
    scripted.enqueue([{"text": "partial"}, {"wait": "never"}, {"text": " rest"}])
    started = await client.responses.create(model="scripted/demo", input="Go", background=True)
    assert started.status == "in_progress" and started.background
    with anyio.fail_after(5):
        await scripted.wait_for_requests(1)
    cancelled = await client.responses.cancel(started.id)
    assert cancelled.status == "cancelled"
    got = await client.responses.retrieve(started.id)
    assert got.status == "cancelled"
    assert got.output_text == "partial"


async def test_errors_raise_the_matching_openai_exceptions(
    live: Live, client: AsyncOpenAI, scripted: ScriptedProvider
) -> None:
    async with AsyncOpenAI(base_url=f"{live.url}/v1", api_key="not-a-jwt", max_retries=0) as bad:
        with pytest.raises(openai.AuthenticationError) as auth:
            await bad.responses.create(model="scripted/demo", input="x")
    assert auth.value.code == "invalid_api_key"
    with pytest.raises(openai.NotFoundError) as unknown:
        await client.responses.create(model="nosuch/model", input="x")
    assert unknown.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError):
        await client.responses.create(model="scripted/demo", input=[])
    with pytest.raises(openai.BadRequestError) as orphan:
        await client.responses.create(
            model="scripted/demo",
            input=[{"type": "function_call_output", "call_id": "call_9", "output": "x"}],
        )
    assert "call_9" in orphan.value.message
    with pytest.raises(openai.BadRequestError) as tool:
        await client.responses.create(
            model="scripted/demo", input="x", tools=[{"type": "web_search"}]
        )
    assert tool.value.param == "tools"


async def test_a_failure_mid_stream_is_a_failed_response(
    client: AsyncOpenAI, scripted: ScriptedProvider
) -> None:
    scripted.enqueue(
        [{"text": "Hel"}, {"error": {"code": "ERR_PROVIDER_UNAVAILABLE", "message": "fell"}}]
    )
    async with client.responses.stream(model="scripted/demo", input="Hi") as stream:
        events = [event async for event in stream]
    failed = events[-1]
    assert failed.type == "response.failed"
    assert failed.response.error is not None
    assert failed.response.error.code == "ERR_PROVIDER_UNAVAILABLE"  # type: ignore[comparison-overlap]
    assert "fell" in failed.response.error.message
    assert failed.response.output[0].status == "incomplete"
    scripted.enqueue([{"error": {"code": "ERR_PROVIDER_UNAVAILABLE", "message": "fell"}}])
    with pytest.raises(openai.APIStatusError) as whole:
        await client.responses.create(model="scripted/demo", input="Hi")
    assert whole.value.status_code == 502


async def test_a_run_waiting_for_approval_is_a_conflict_naming_the_run(
    client: AsyncOpenAI, scripted: ScriptedProvider, tool_registry: ToolRegistry
) -> None:
    async def delete(args: dict[str, Any], ctx: ToolContext) -> str:
        return "deleted"

    tool_registry.register(FunctionTool("delete_task", delete, requires_approval=True))
    scripted.enqueue([{"tool_call": {"name": "delete_task", "id": "call_7"}}])
    with pytest.raises(openai.ConflictError) as waiting:
        await client.responses.create(model="profile/todo", input="delete it")
    assert waiting.value.code == "approval_required"
    assert "call_7" in waiting.value.message
    assert waiting.value.response.headers["x-run-id"].startswith("run_")


async def test_the_door_is_in_the_openapi_schema_with_openais_error_shape(live: Live) -> None:
    async with live.client(None) as http:
        paths = (await http.get("/openapi.json")).json()["paths"]
    assert set(paths["/v1/responses"]) == {"post"}
    assert set(paths["/v1/responses/{response_id}"]) == {"get"}
    assert set(paths["/v1/responses/{response_id}/cancel"]) == {"post"}
    refused = paths["/v1/responses"]["post"]["responses"]["4XX"]["content"]["application/json"]
    assert refused["schema"]["$ref"].endswith("/OpenAIErrorResponse")


NODE_DIR = Path(__file__).parent / "node"


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
@pytest.mark.skipif(
    not (NODE_DIR / "node_modules" / "@ai-sdk" / "openai").is_dir(),
    reason="@ai-sdk/openai is not installed: run npm ci --prefix tests/compat/node",
)
@pytest.mark.parametrize("version", ["ai6", "ai7"])
async def test_ai_sdk_openai_default_model_generates_streams_and_loops_over_tools(
    version: str, live: Live, scripted: ScriptedProvider, tool_registry: ToolRegistry
) -> None:
    scripted.enqueue(
        [{"text": "Paris."}, {"usage": {"prompt_tokens": 9, "completion_tokens": 2}}],
        [{"text": ["Hel", "lo"]}],
        [{"text": "Let me look."}, WEATHER_CALL],
        [{"text": "It is 21C."}],
    )
    result = await run_node("responses.mjs", version, live)
    generated = result["generated"]
    assert (generated["text"], generated["responseId"][:5]) == ("Paris.", "resp_")
    assert (generated["finishReason"], generated["tokens"]) == ("stop", [9, 2])
    assert result["streamed"] == {"chunks": ["Hel", "lo"], "text": "Hello", "finishReason": "stop"}
    looped = result["looped"]
    assert looped["text"] == "It is 21C."
    assert looped["steps"] == [
        {
            "finishReason": "tool-calls",
            "calls": [["get_weather", {"city": "Paris"}]],
            "results": [{"city": "Paris", "tempC": 21}],
        },
        {"finishReason": "stop", "calls": [], "results": []},
    ]
    assert sent(scripted, 0) == [("system", "Be brief."), ("user", "Capital of France?")]
    assert [role for role, _ in sent(scripted, 3)] == ["user", "assistant", "tool"]
    assert sent(scripted, 3)[1] == ("assistant", "Let me look.")  # an item_reference, resolved
    assert json.loads(sent(scripted, 3)[2][1]) == {"city": "Paris", "tempC": 21}
    scripted.assert_done()


async def test_a_lost_stream_is_resumed_by_the_clients_retrieve_with_the_same_numbers(
    client: AsyncOpenAI, scripted: ScriptedProvider
) -> None:
    """``responses.retrieve(id, stream=True, starting_after=n)`` (the client's own resume) gives
    the events after ``n`` with the numbers the first stream gave them; from the start, with a
    client's function call in it, the whole stream again."""
    scripted.enqueue([{"text": ["one ", "two ", "three"]}], [WEATHER_CALL])
    first = [
        e
        async for e in await client.responses.create(model="scripted/demo", input="Hi", stream=True)
    ]
    response_id = first[0].response.id  # type: ignore[union-attr]
    cut = first[3].sequence_number
    rest = [
        e
        async for e in await client.responses.retrieve(response_id, stream=True, starting_after=cut)
    ]
    assert [(e.type, e.sequence_number) for e in rest] == [
        (e.type, e.sequence_number) for e in first[4:]
    ]
    called = [
        e
        async for e in await client.responses.create(
            model="scripted/demo", input="Weather?", tools=[WEATHER_TOOL], stream=True
        )
    ]
    again = [
        e
        async for e in await client.responses.retrieve(
            called[0].response.id,  # type: ignore[union-attr]
            stream=True,
        )
    ]
    assert [(e.type, e.sequence_number) for e in again] == [
        (e.type, e.sequence_number) for e in called
    ]
    assert any(e.type == "response.function_call_arguments.delta" for e in again)
