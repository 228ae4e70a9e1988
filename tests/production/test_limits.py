"""Rate limits and budgets: a 429 before anything is written; concurrent requests cannot overrun."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from tests.conftest import Live, auth
from tests.fakes.openai_server import FakeOpenAI, paced
from tests.support.processes import ParleyProcess
from tests.support.sse import collect

from parley.providers.scripted import ScriptedProvider

# "hi" is one token by the estimate (4 characters a token) and each request asks for 10 more.
PER_REQUEST = 11


async def _send(http: httpx.AsyncClient, cid: str) -> int:
    response, _ = await collect(
        http,
        "POST",
        f"/api/conversations/{cid}/messages",
        json_body={"content": "hi", "max_tokens": 10},
        stop_after="start",
    )
    if response.status_code == 429:
        assert response.headers["retry-after"].isdigit()
        assert response.json()["error"]["code"] == "ERR_RATE_LIMITED"
    return response.status_code


async def _conversations(http: httpx.AsyncClient, n: int) -> list[str]:
    return [(await http.post("/api/conversations", json={})).json()["id"] for _ in range(n)]


class TestOneProcess:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {"limits": {"tokens_per_day": 5 * PER_REQUEST}}

    async def test_20_concurrent_requests_against_a_budget_for_5_admit_at_most_5(
        self, live: Live, scripted: ScriptedProvider
    ) -> None:
        for _ in range(5):
            scripted.enqueue(
                [
                    {"wait": "go"},
                    {"text": "ok"},
                    {"usage": {"prompt_tokens": 1, "completion_tokens": 10}},
                ]
            )
        async with live.client() as http:
            cids = await _conversations(http, 20)
            statuses = await asyncio.gather(*(_send(http, cid) for cid in cids))
            assert sorted(statuses) == [200] * 5 + [429] * 15
            scripted.release("go")
            rejected = [cid for cid, status in zip(cids, statuses, strict=True) if status == 429]
            for cid in rejected:
                assert (await http.get(f"/api/conversations/{cid}")).json()["messages"] == []
        assert len(scripted.requests) == 5

    async def test_the_budget_is_settled_with_the_real_usage(
        self, live: Live, scripted: ScriptedProvider
    ) -> None:
        # Each reply really uses 3 tokens, so after settling more than 5 requests fit.
        for _ in range(7):
            scripted.enqueue(
                [{"text": "ok"}, {"usage": {"prompt_tokens": 1, "completion_tokens": 2}}]
            )
        async with live.client() as http:
            cids = await _conversations(http, 7)
            for cid in cids:
                response = await http.post(
                    f"/api/conversations/{cid}/messages",
                    json={"content": "hi", "max_tokens": 10, "stream": False},
                )
                assert response.status_code == 200, response.text
        scripted.assert_done()


class TestRequestsPerMinute:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {
            "limits": {"requests_per_minute": 3},
            "user_limits": {"vip": {"requests_per_minute": 100}},
        }

    async def test_the_fourth_request_in_a_minute_is_a_429_and_other_users_are_not_affected(
        self, live: Live, scripted: ScriptedProvider
    ) -> None:
        for _ in range(7):
            scripted.enqueue([{"text": "ok"}])
        async with live.client() as http:
            cids = await _conversations(http, 4)
            statuses = [await _send(http, cid) for cid in cids]
        assert statuses == [200, 200, 200, 429]
        async with live.client("vip") as http:
            cids = await _conversations(http, 4)
            assert [await _send(http, cid) for cid in cids] == [200] * 4


@pytest.fixture
def pair_env() -> dict[str, str]:
    return {
        "PARLEY_LIMITS__TOKENS_PER_DAY": str(5 * PER_REQUEST),
        "PARLEY_USER_LIMITS__RPM__REQUESTS_PER_MINUTE": "3",
    }


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.slow
async def test_the_budget_and_the_rate_limit_hold_across_two_processes(
    pair: tuple[ParleyProcess, ParleyProcess], fake: FakeOpenAI
) -> None:
    a, b = pair
    for _ in range(5):
        fake.enqueue(paced(100, 50))
    async with (
        httpx.AsyncClient(base_url=a.url, headers=auth("alice"), timeout=20) as on_a,
        httpx.AsyncClient(base_url=b.url, headers=auth("alice"), timeout=20) as on_b,
    ):
        cids = await _conversations(on_a, 20)
        statuses = await asyncio.gather(
            *(_send(on_a if i % 2 else on_b, cid) for i, cid in enumerate(cids))
        )
        assert sorted(statuses) == [200] * 5 + [429] * 15
    async with (
        httpx.AsyncClient(base_url=a.url, headers=auth("rpm"), timeout=20) as on_a,
        httpx.AsyncClient(base_url=b.url, headers=auth("rpm"), timeout=20) as on_b,
    ):
        for _ in range(4):
            fake.enqueue(paced(2, 1))
        cids = await _conversations(on_a, 4)
        statuses = [
            await _send(client, cid)
            for client, cid in zip([on_a, on_b, on_a, on_b], cids, strict=True)
        ]
        assert statuses == [200, 200, 200, 429]
