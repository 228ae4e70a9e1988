"""``GET /metrics``: the counters move as requests, runs, tokens and tool calls happen."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests.conftest import Live
from tests.support.sse import collect, kinds
from tests.support.wait import until

from parley.api.deps import Services
from parley.metrics import Metrics
from parley.providers.scripted import ScriptedProvider
from parley.tools.base import FunctionTool, ToolContext
from parley.tools.registry import ToolRegistry

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(live: Live, **headers: str) -> Samples:
    async with live.client(user=None) as http:
        response = await http.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


async def settled(live: Live, check: Callable[[Services], bool]) -> None:
    """Let the server finish its side of a request (it closes a stream after the client's read)."""
    await until(lambda: check(live.services))


def no_open_streams(services: Services) -> bool:
    return services.metrics.open_streams._value.get() == 0


async def conversation(live: Live) -> str:
    async with live.client() as http:
        return str((await http.post("/api/conversations", json={})).json()["id"])


async def chat(
    live: Live, cid: str, content: str, *, stop_after: str | None = None
) -> tuple[httpx.Response, list[Any]]:
    async with live.client() as http:
        response, events = await collect(
            http,
            "POST",
            f"/api/conversations/{cid}/messages",
            json_body={"content": content},
            stop_after=stop_after,
        )
    await live.services.runs.wait(response.headers["x-run-id"])
    await settled(live, no_open_streams)
    return response, events


async def test_a_streamed_chat_moves_runs_tokens_requests_and_time_to_first_token(
    live: Live, scripted: ScriptedProvider
) -> None:
    scripted.enqueue(
        [{"text": ["Hel", "lo"]}, {"usage": {"prompt_tokens": 11, "completion_tokens": 4}}]
    )
    cid = await conversation(live)
    before = await scrape(live)
    _, events = await chat(live, cid, "Hi")
    assert kinds(events)[-2:] == ["done", "[DONE]"]
    after = await scrape(live)

    assert delta(before, after, "parley_runs_started_total") == 1
    assert delta(before, after, "parley_runs_finished_total", reason="stop") == 1
    assert delta(before, after, "parley_runs_failed_total", code="ERR_INTERNAL") == 0
    tokens = {"provider": "scripted", "model": "demo"}
    assert delta(before, after, "parley_tokens_total", direction="input", **tokens) == 11
    assert delta(before, after, "parley_tokens_total", direction="output", **tokens) == 4
    assert delta(before, after, "parley_time_to_first_token_seconds_count", **tokens) == 1
    route = "/api/conversations/{conversation_id}/messages"
    assert delta(before, after, "parley_http_requests_total", **_req("POST", route, 200)) == 1
    assert value(after, "parley_open_streams") == 0
    assert not any(cid in label for (_, pairs) in after for _, label in pairs)


async def test_requests_are_counted_by_route_template_and_status_never_by_id(
    live: Live,
) -> None:
    cid = await conversation(live)
    before = await scrape(live)
    async with live.client() as http:
        assert (await http.get(f"/api/conversations/{cid}")).status_code == 200
        assert (await http.get("/api/conversations/conv_missing")).status_code == 404
        assert (await http.get("/no/such/route/42")).status_code == 404
    async with live.client(user=None) as http:
        assert (await http.get("/api/conversations")).status_code == 401
    after = await scrape(live)

    one = "/api/conversations/{conversation_id}"
    assert delta(before, after, "parley_http_requests_total", **_req("GET", one, 200)) == 1
    assert delta(before, after, "parley_http_requests_total", **_req("GET", one, 404)) == 1
    many = "/api/conversations"
    assert delta(before, after, "parley_http_requests_total", **_req("GET", many, 401)) == 1
    unmatched = _req("GET", "unmatched", 404)
    assert delta(before, after, "parley_http_requests_total", **unmatched) == 1
    assert delta(before, after, "parley_http_requests_total", **_req("GET", "/metrics", 200)) == 1
    routes = {dict(pairs).get("route") for (name, pairs) in after if "http_requests" in name}
    assert not any(cid in str(r) or "42" in str(r) for r in routes)


def _req(method: str, route: str, status: int) -> dict[str, str]:
    return {"method": method, "route": route, "status": str(status)}


async def _lookup(arguments: dict[str, Any], context: ToolContext) -> dict[str, Any]:
    return {"found": arguments.get("q")}


async def test_an_executed_tool_call_is_counted_by_tool_and_status(
    live: Live, scripted: ScriptedProvider, tool_registry: ToolRegistry
) -> None:
    tool_registry.register(FunctionTool("lookup", _lookup, read_only=True))
    scripted.enqueue(
        [{"tool_call": {"name": "lookup", "arguments": {"q": "x"}, "id": "call_1"}}],
        [{"text": "found it"}],
    )
    cid = await conversation(live)
    before = await scrape(live)
    _, events = await chat(live, cid, "look it up")
    after = await scrape(live)

    assert "tool_result" in kinds(events)
    tool = {"tool": "lookup"}
    assert delta(before, after, "parley_tool_calls_total", status="executed", **tool) == 1
    assert delta(before, after, "parley_tool_calls_total", status="failed", **tool) == 0
    ttft = {"provider": "scripted", "model": "demo"}
    assert delta(before, after, "parley_time_to_first_token_seconds_count", **ttft) == 1
    assert delta(before, after, "parley_runs_finished_total", reason="stop") == 1


async def test_a_failing_tool_and_an_unknown_tool_are_counted_as_failed(
    live: Live, scripted: ScriptedProvider, tool_registry: ToolRegistry
) -> None:
    async def broken(arguments: dict[str, Any], context: ToolContext) -> Any:
        raise RuntimeError("disk on fire")

    tool_registry.register(FunctionTool("broken", broken, read_only=True))
    scripted.enqueue(
        [
            {"tool_call": {"name": "broken", "arguments": {}, "id": "call_1"}},
            {"tool_call": {"name": "made_up_tool_9", "arguments": {}, "id": "call_2"}},
        ],
        [{"text": "sorry"}],
    )
    cid = await conversation(live)
    before = await scrape(live)
    await chat(live, cid, "try")
    after = await scrape(live)

    failed = "parley_tool_calls_total"
    assert delta(before, after, failed, tool="broken", status="failed") == 1
    assert delta(before, after, failed, tool="unknown", status="failed") == 1
    assert not any("made_up_tool_9" in str(pairs) for (_, pairs) in after)


async def test_approvals_waiting_rises_and_falls_and_approvals_are_counted(
    live: Live, scripted: ScriptedProvider, tool_registry: ToolRegistry
) -> None:
    tool_registry.register(FunctionTool("launch", _lookup, requires_approval=True))
    scripted.enqueue(
        [{"tool_call": {"name": "launch", "arguments": {}, "id": "call_1"}}],
        [{"text": "launched"}],
    )
    cid = await conversation(live)
    before = await scrape(live)
    response, events = await chat(live, cid, "launch it", stop_after="awaiting_input")
    run_id = response.headers["x-run-id"]
    assert "tool_approval_required" in kinds(events)
    waiting = await scrape(live)
    assert delta(before, waiting, "parley_approvals_waiting") == 1
    assert delta(before, waiting, "parley_runs_suspended_total") == 1

    async with live.client() as http:
        answer = await http.post(f"/api/runs/{run_id}/approvals/call_1", json={"approved": True})
        assert answer.status_code < 300, answer.text
    await live.services.runs.wait(run_id)
    after = await scrape(live)

    assert delta(before, after, "parley_approvals_waiting") == 0
    tool = {"tool": "launch"}
    assert delta(before, after, "parley_tool_calls_total", status="approved", **tool) == 1
    assert delta(before, after, "parley_tool_calls_total", status="executed", **tool) == 1
    assert delta(before, after, "parley_runs_finished_total", reason="stop") == 1
    assert delta(before, after, "parley_runs_started_total") == 1


async def test_a_cancelled_run_counts_as_cancelled(live: Live, scripted: ScriptedProvider) -> None:
    scripted.enqueue([{"text": "partial"}, {"wait": "never"}])
    cid = await conversation(live)
    before = await scrape(live)
    async with live.client() as http:
        response, _ = await collect(
            http,
            "POST",
            f"/api/conversations/{cid}/messages",
            json_body={"content": "go"},
            stop_after="content",
        )
        run_id = response.headers["x-run-id"]
        assert (await http.post(f"/api/runs/{run_id}/cancel")).status_code < 300
    await live.services.runs.wait(run_id)
    await settled(live, no_open_streams)
    after = await scrape(live)

    assert delta(before, after, "parley_runs_cancelled_total") == 1
    assert delta(before, after, "parley_runs_finished_total", reason="stop") == 0
    assert value(after, "parley_open_streams") == 0


@pytest.mark.parametrize("settings_overrides", [{"metrics_token": "scrape-me"}])
async def test_a_metrics_token_protects_the_endpoint(live: Live) -> None:
    async with live.client(user=None) as http:
        missing = await http.get("/metrics")
        wrong = await http.get("/metrics", headers={"Authorization": "Bearer nope"})
    assert missing.status_code == 401 and wrong.status_code == 401
    assert missing.json()["error"]["code"] == "ERR_UNAUTHENTICATED"
    samples = await scrape(live, Authorization="Bearer scrape-me")
    assert ("parley_runs_started_total", frozenset()) in samples


def test_each_metrics_object_has_a_registry_of_its_own() -> None:
    one, two = Metrics(), Metrics()
    one.runs_started.inc()
    assert two.runs_started._value.get() == 0
    assert b"parley_runs_started_total 1.0" in one.render()
