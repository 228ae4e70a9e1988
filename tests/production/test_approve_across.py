"""A tool call waiting for approval on A is approved from B, and the run completes once."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from tests.conftest import auth
from tests.fakes.openai_server import FakeOpenAI, text, tool_calls
from tests.support.processes import ParleyProcess
from tests.support.sse import collect, kinds

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]


@pytest.fixture
def pair_env() -> dict[str, str]:
    return {"PARLEY_APPROVALS": "all"}


async def test_an_approval_given_on_b_runs_the_tool_once_and_finishes_the_run(
    pair: tuple[ParleyProcess, ParleyProcess], fake: FakeOpenAI
) -> None:
    a, b = pair
    fake.enqueue(
        tool_calls(("call_milk", "add_task", ['{"title": ', '"buy milk"}'])),
        text("Added it."),
    )
    async with (
        httpx.AsyncClient(base_url=a.url, headers=auth("alice"), timeout=20) as on_a,
        httpx.AsyncClient(base_url=b.url, headers=auth("alice"), timeout=20) as on_b,
    ):
        cid = (await on_a.post("/api/conversations", json={})).json()["id"]
        first, seen = await collect(
            on_a,
            "POST",
            f"/api/conversations/{cid}/messages",
            json_body={"content": "add milk"},
            stop_after="awaiting_input",
        )
        assert "tool_approval_required" in kinds(seen)
        run_id = first.headers["x-run-id"]
        watcher = asyncio.create_task(
            collect(
                on_a, "GET", f"/api/runs/{run_id}/events", headers={"Last-Event-ID": seen[-1].id}
            )
        )
        answers = await asyncio.gather(
            on_b.post(f"/api/runs/{run_id}/approvals/call_milk", json={"approved": True}),
            on_a.post(f"/api/runs/{run_id}/approvals/call_milk", json={"approved": True}),
        )
        assert sorted(r.status_code for r in answers) == [200, 409]
        _, rest = await asyncio.wait_for(watcher, 20)
        calls = (await on_b.get(f"/api/conversations/{cid}/tool-calls")).json()["items"]
    assert kinds(rest)[-2:] == ["done", "[DONE]"]
    assert "tool_result" in kinds(rest)
    assert [(c["tool_name"], c["status"]) for c in calls] == [("add_task", "succeeded")]
