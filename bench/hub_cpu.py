"""CPU per event of a run hub: one run of N text deltas published as the engine does (one at a
time, yielding to the loop between them) with one subscriber in the same process.

    python -m bench.hub_cpu [--redis redis://127.0.0.1:6379/0] [--events 10000] [--rounds 5]

Prints the median over rounds of this process's CPU (user + system) per event, for the memory
hub and, with ``--redis``, the Redis hub. Redis's own CPU is not counted (another process).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from parley.chat import events as ev
from parley.chat.ids import new_id
from parley.runs.base import RunHub
from parley.runs.memory import MemoryRunHub


async def _one_run(hub: RunHub, events: int) -> float:
    run_id = new_id("bench")
    await hub.open(run_id)

    async def control(message: dict[str, object]) -> None:
        return None

    await hub.own(run_id, control)
    seen = 0

    async def read() -> None:
        nonlocal seen
        async for _ in hub.subscribe(run_id):
            seen += 1

    started = time.process_time()
    reader = asyncio.create_task(read())
    await asyncio.sleep(0)
    await hub.publish(
        run_id,
        ev.RunStarted(
            run_id=run_id, conversation_id="c", user_message_id="u", message_id="m", model="x/y"
        ),
    )
    delta = ev.TextDelta(content="token ")
    for _ in range(events - 2):
        await hub.publish(run_id, delta)
        await asyncio.sleep(0)  # the engine awaits the model between tokens
    await hub.publish(run_id, ev.RunFinished(message_id="m", finish_reason="stop"))
    await reader
    await hub.disown(run_id)
    assert seen == events, seen
    return (time.process_time() - started) / events * 1e6


async def _measure(hub: RunHub, events: int, rounds: int) -> float:
    await hub.start()
    try:
        await _one_run(hub, events)  # warm-up
        return statistics.median([await _one_run(hub, events) for _ in range(rounds)])
    finally:
        await hub.aclose()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--redis", default=None)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    memory = await _measure(MemoryRunHub(), args.events, args.rounds)
    print(f"memory hub: {memory:.1f} µs per event")
    if args.redis:
        from parley.runs.redis import RedisRunHub, connect

        hub = RedisRunHub(connect(args.redis), instance=new_id("bench"), ttl=60)
        redis = await _measure(hub, args.events, args.rounds)
        print(f"redis hub:  {redis:.1f} µs per event ({redis / memory:.2f}x)")


if __name__ == "__main__":
    asyncio.run(main())
