"""Time per turn in long conversations (issue 29): a turn in a conversation of 10, 1,000 and
10,000 messages, on a real ``parley serve`` against the fake upstream, beside the bare relay.

Each conversation is written straight into the server's database through the store (one
transaction; not thousands of replies) before the server serves a turn, ending with a reply. A
long one is as issue 29 leaves it: its summary covers all but its newest ``KEPT`` messages (as
many as the short one has), so a turn reads the summary and the messages after it; the window
holds them all, no fold happens while it is measured, and the result says whether one did. On
PostgreSQL the tables are then vacuumed and analyzed, as autovacuum would within a minute.

Each turn is a native SSE reply of 20 chunks continuing its conversation, timed from the
request to the end of the response (the reply and the run's end are committed before the last
event), each after a request to the upstream alone, as the first-token scenario does: what the
server adds to a turn is the paired difference. The conversations take turns round by round,
so that a drift in the machine's speed moves them alike. The server's CPU per turn is read
from ``/proc`` around each request (10 ms ticks, averaged over the turns).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Connection, text, update

from bench import procs
from bench.streams import model, percentiles
from parley.store import Store, tables
from parley.store.conversations import set_leaf
from parley.store.db import create_engine, session_factory
from parley.store.messages import insert_messages, message_values

USER = "bench"  # the user of procs.parley's token
KEPT = 10  # messages of a long conversation after its summary: as many as the short one has
CHUNKS = 20
FLAT = 1.2  # issue 29: a turn at 1,000 and 10,000 messages within 1.2x of one at 10


async def seed(database_url: str, size: int) -> str:
    """A conversation of ``size`` messages (user and assistant in turn, ending with a reply);
    past ``KEPT`` messages, with a summary of all but the newest ``KEPT``."""
    store = Store(session_factory(create_engine(database_url, pool_size=1, max_overflow=0)))
    try:
        convo = await store.create_conversation(USER, title=f"{size} messages")
        rows: list[dict[str, Any]] = []
        parent: str | None = None
        for depth in range(size):
            role = "user" if depth % 2 == 0 else "assistant"
            words = f"message {depth}: " + "lorem ipsum " * 20
            row = message_values(USER, convo.id, role, [{"type": "text", "text": words}])
            row.update(parent_id=parent, depth=depth)
            parent = row["id"]
            rows.append(row)
        covered = rows[size - KEPT - 1]["id"] if size > KEPT else None

        def write(conn: Connection) -> None:
            insert_messages(conn, rows)
            set_leaf(conn, USER, convo.id, parent)
            if covered is not None:
                summary = (
                    f"The first {size - KEPT} messages counted lorem ipsum, twenty times each."
                )
                conn.execute(
                    update(tables.conversations)
                    .where(tables.conversations.c.id == convo.id)
                    .values(summary=summary, summary_message_id=covered)
                )

        await store.write(write)
        if database_url.startswith("postgresql"):
            await _vacuum(database_url)
        return convo.id
    finally:
        await store.close()


async def _vacuum(database_url: str) -> None:
    """What autovacuum does within a minute of such an insert, done before the clock starts.
    Without the statistics, for that minute, the walk runs on the generic plan each server
    connection cached while the table was nearly empty (a scan of the whole table at each
    step: 40 to 80 ms a walk at 10,000 messages); without the vacuum, the first turns share
    the database with it."""
    engine = create_engine(database_url, pool_size=1, max_overflow=0)
    try:
        async with engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text("VACUUM (ANALYZE) messages, conversations"))
    finally:
        await engine.dispose()


async def _timed(http: httpx.AsyncClient, server: procs.Server, convo: str | None = None) -> float:
    """Seconds from the request to the end of one 20-chunk reply."""
    name = model(CHUNKS)
    body: dict[str, Any] = {"model": name}
    if server.kind == "relay":
        url = f"{server.url}/relay"
    elif server.kind == "upstream":
        url = f"{server.url}/v1/chat/completions"
        body = {"model": name, "stream": True, "messages": []}
    else:
        url = f"{server.url}/api/conversations/{convo}/messages"
        body = {"content": "and then?", "model": f"openai/{name}"}
    started = time.perf_counter()
    async with http.stream("POST", url, json=body, headers=server.headers) as response:
        response.raise_for_status()
        await response.aread()
    return time.perf_counter() - started


async def turns_beside(
    server: procs.Server,
    upstream: procs.Server,
    turns: int,
    convos: dict[str, str | None],
    pause: float = 0.02,
) -> dict[str, dict[str, Any]]:
    """``turns`` rounds: in each, a request to ``server`` continuing each of ``convos`` (None
    for the relay), each after one to the upstream alone, so that a drift in the machine's
    speed moves every conversation alike; a fresh connection each (see
    streams.first_token_beside). By the keys of ``convos``."""
    fresh = httpx.Limits(max_keepalive_connections=0)
    times: dict[str, dict[str, list[float]]] = {
        key: {"server": [], "upstream": [], "cpu": []} for key in convos
    }
    async with httpx.AsyncClient(timeout=60, limits=fresh) as http:
        for convo in convos.values():  # warm up: the first turn counts the window's tokens
            await _timed(http, server, convo)
        await _timed(http, upstream)
        for _ in range(turns):
            for key, convo in convos.items():
                await asyncio.sleep(pause)
                times[key]["upstream"].append(await _timed(http, upstream))
                await asyncio.sleep(pause)
                before = procs.cpu_seconds(server.pids)
                times[key]["server"].append(await _timed(http, server, convo))
                times[key]["cpu"].append(procs.cpu_seconds(server.pids) - before)
    return {key: _summed(measured) for key, measured in times.items()}


def _summed(times: dict[str, list[float]]) -> dict[str, Any]:
    paired = [a - b for a, b in zip(times["server"], times["upstream"], strict=True)]
    return {
        "turn_s": percentiles(times["server"]),
        "upstream_s": percentiles(times["upstream"]),
        "added_paired_s": percentiles(paired),
        "cpu_ms_per_turn": sum(times["cpu"]) / len(times["cpu"]) * 1e3,
    }


async def _summary_of(server: procs.Server, convo: str | None) -> str | None:
    async with httpx.AsyncClient(timeout=30) as http:
        shown = await http.get(
            f"{server.url}/api/conversations/{convo}?limit=1", headers=server.headers
        )
        shown.raise_for_status()
        found: str | None = shown.json().get("summary_message_id")
        return found


async def on_parley(
    upstream: procs.Server, workdir: Path, database: str, sizes: tuple[int, ...], turns: int
) -> dict[str, Any]:
    """Time per turn at each size, on one ``parley serve`` on ``database`` (its URL)."""
    name = "parley-long-pg" if database.startswith("postgresql") else "parley-long"
    async with procs.parley(upstream.url, workdir, database, name=name) as parley:
        convos: dict[str, str | None] = {str(size): await seed(database, size) for size in sizes}
        covered = {key: await _summary_of(parley, convo) for key, convo in convos.items()}
        await procs.settle([parley, upstream], at_least=1.0)
        out = await turns_beside(parley, upstream, turns, convos)
        for key, convo in convos.items():
            out[key]["messages"] = int(key)
            kept = await _summary_of(parley, convo) == covered[key]
            out[key]["no_fold_while_measured"] = kept
    return out


def flatness(by_size: dict[str, Any]) -> float:
    """The longest conversations' added time per turn (p50, paired) over the shortest's."""
    added = [by_size[k]["added_paired_s"]["p50"] for k in sorted(by_size, key=int)]
    return max(added[1:]) / added[0] if added[0] > 0 else float("inf")


def targets(r: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for db in ("sqlite", "postgres"):
        if db in r:
            ratio = flatness(r[db])
            out[f"turn_time_flat_le_1_2x_{db}"] = {"value": ratio, "met": ratio <= FLAT}
    return out


def lines(r: dict[str, Any]) -> list[str]:
    relay = r["relay"]
    out = [
        "time per turn, 20-chunk reply (ms: server's added p50 paired / its CPU per turn;"
        f" relay {relay['added_paired_s']['p50'] * 1e3:.2f} / {relay['cpu_ms_per_turn']:.2f}):"
    ]
    for db in ("sqlite", "postgres"):
        if db in r:
            cells = [
                f"{k} msgs {v['added_paired_s']['p50'] * 1e3:.2f} / {v['cpu_ms_per_turn']:.2f}"
                for k, v in sorted(r[db].items(), key=lambda kv: int(kv[0]))
            ]
            out.append(f"  {db:9} " + "   ".join(cells) + f"   (x{flatness(r[db]):.2f})")
    return out
