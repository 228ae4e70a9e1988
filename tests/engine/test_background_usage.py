"""The model calls that write titles and summaries are the user's: charged to their daily budget
and added to the conversation's usage as a turn's are, and not made once the budget is spent."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from structlog.testing import capture_logs
from tests.conftest import Live

from parley.auth import Principal
from parley.chat import events as ev
from parley.engine.requests import TurnRequest
from parley.limits import MemoryBackend
from parley.providers.scripted import ScriptedProvider
from parley.store.conversations import set_leaf
from parley.store.messages import insert_messages, message_values

USER = "alice"
# per million tokens: a prompt token costs 1, a completion token 2
PRICES = {"scripted/demo": {"prompt": 1e6, "completion": 2e6}}
WINDOW = {"context_window": 2_048, "output_reserve": 256}


@pytest.fixture
def settings_overrides(request: pytest.FixtureRequest) -> dict[str, Any]:
    budget = getattr(request, "param", 100_000)
    return {
        "auto_titles": True,
        "summary_after": 10,
        "prices": PRICES,
        "models": {"scripted/demo": WINDOW},
        "limits": {"tokens_per_day": budget},
    }


def _spent(live: Live) -> tuple[float, float]:
    """The user's tokens and cost charged today."""
    limiter = live.services.engine.budget.limiter
    assert limiter is not None and isinstance(limiter.backend, MemoryBackend)
    backend = limiter.backend
    tokens = sum(v for (user, _), v in backend.tokens.items() if user == USER)
    cost = sum(v for (user, _), v in backend.costs.items() if user == USER)
    return tokens, cost


async def _turn(live: Live, convo_id: str, request: TurnRequest) -> list[ev.EngineEvent]:
    engine = live.services.engine
    turn = await engine.prepare(Principal(USER), convo_id, request)
    events = [event async for event in engine.run(turn)]
    assert engine.summaries is not None
    with anyio.fail_after(20):
        await engine.summaries.idle()
    return events


def _usage(prompt: int, completion: int) -> dict[str, Any]:
    return {"usage": {"prompt_tokens": prompt, "completion_tokens": completion}}


async def test_a_titles_call_is_charged_to_the_user_and_the_conversation(
    live: Live, scripted: ScriptedProvider
) -> None:
    store = live.services.store
    convo = await store.create_conversation(USER)
    scripted.enqueue(
        [{"text": "About two million."}, _usage(11, 3)],
        [{"text": "Paris population"}, _usage(40, 2)],  # the title's call
    )
    await _turn(live, convo.id, TurnRequest(content="How many people live in Paris?"))
    stored = await store.get_conversation(USER, convo.id)
    assert stored.title == "Paris population"
    assert (stored.prompt_tokens, stored.completion_tokens) == (11 + 40, 3 + 2)
    assert stored.cost == pytest.approx(51 + 2 * 5)
    assert _spent(live) == pytest.approx((56, 61))  # the turn's and the title's, nothing held


async def test_summary_calls_are_charged_to_the_user_and_the_conversation(
    live: Live, scripted: ScriptedProvider
) -> None:
    store = live.services.store
    convo = await store.create_conversation(USER)
    rows: list[dict[str, Any]] = []
    leaf: str | None = None
    for depth in range(200):
        role = "user" if depth % 2 == 0 else "assistant"
        words = f"message {depth}: " + " ".join(f"word{j}" for j in range(20))
        row = message_values(USER, convo.id, role, [{"type": "text", "text": words}])
        row.update(parent_id=leaf, depth=depth)
        leaf = row["id"]
        rows.append(row)
    await store.write(
        lambda conn: (insert_messages(conn, rows), set_leaf(conn, USER, convo.id, leaf))
    )
    scripted.enqueue([{"text": "ok"}, _usage(1_500, 1)])
    scripted.enqueue(*[[{"text": f"summary {i}"}, _usage(300, 20)] for i in range(20)])
    await _turn(live, convo.id, TurnRequest(content="and now?"))
    folds = len(scripted.requests) - 1
    assert folds >= 2
    stored = await store.get_conversation(USER, convo.id)
    assert stored.summary == f"summary {folds - 1}"
    assert (stored.prompt_tokens, stored.completion_tokens) == (1_500 + 300 * folds, 1 + 20 * folds)
    assert stored.cost == pytest.approx(1_502 + 340 * folds)
    assert _spent(live) == pytest.approx((1_501 + 320 * folds, 1_502 + 340 * folds))


# the turn costs 14 tokens and its reservation (its prompt's ~10 and max_tokens 1) fits 34;
# the title's reservation (its prompt's ~50 and 24) does not fit what is left
@pytest.mark.parametrize("settings_overrides", [34], indirect=True)
async def test_no_title_is_asked_for_once_the_users_budget_is_spent(
    live: Live, scripted: ScriptedProvider
) -> None:
    store = live.services.store
    convo = await store.create_conversation(USER)
    scripted.enqueue([{"text": "Two million."}, _usage(11, 3)], [{"text": "never asked"}])
    with capture_logs() as logs:
        await _turn(live, convo.id, TurnRequest(content="How many live in Paris?", max_tokens=1))
    assert len(scripted.requests) == 1
    assert (await store.get_conversation(USER, convo.id)).title == "How many live in Paris?"
    assert [e["event"] for e in logs if e["event"].startswith("title")] == ["title_failed"]
    assert _spent(live) == pytest.approx((14, 17))  # the title's reservation is not left held
