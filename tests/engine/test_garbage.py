"""A finished run leaves nothing in reference cycles: its objects are freed as it ends, not by a
full garbage collection that would pause every other stream."""

from __future__ import annotations

from tests.conftest import Live
from tests.support.garbage import cyclic_garbage, types_from
from tests.support.sse import collect

from parley.providers.scripted import ScriptedProvider


async def test_a_finished_run_leaves_no_cycles(live: Live, scripted: ScriptedProvider) -> None:
    scripted.enqueue(*[[{"text": ["a", "b", "c"]}] for _ in range(3)])
    convo = await live.services.store.create_conversation("alice")
    async with live.client() as http:
        await collect(
            http, "POST", f"/api/conversations/{convo.id}/messages", json_body={"content": "warm"}
        )
        with cyclic_garbage() as garbage:
            for _ in range(2):
                await collect(
                    http,
                    "POST",
                    f"/api/conversations/{convo.id}/messages",
                    json_body={"content": "hi"},
                )
    assert types_from(garbage, "parley") == set()
