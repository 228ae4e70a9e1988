"""``make bench``: parley against a bare relay, both fed by the same fake upstream.

``python -m bench.run [--tiny] [--out FILE] [--no-postgres] [--only long]`` prints a table and
writes JSON results (default ``bench/results/<UTC time>.json``). See bench/README.md for what each
row means; ``--only long`` runs the long-conversation scenario alone (bench/long.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import socket
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from bench import database, long, paced, procs, streams
from parley.logging import configure

POSTGRES_SERVER = os.environ.get(
    "PARLEY_BENCH_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
REDIS = os.environ.get("PARLEY_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")


@dataclass(frozen=True)
class Sizes:
    ttft_requests: int = 200
    history: int = 20  # messages already in the conversation of the history scenario
    history_requests: int = 50
    chunks: int = 10_000
    concurrency: int = 100
    concurrent_chunks: int = 200
    cancels: int = 10
    big: int = 10_000
    paced_levels: tuple[int, ...] = (50, 100, 200, 300, 400, 600, 800)
    paced_chunks: int = 120
    paced_ramp_s: float = 2.0
    idle_streams: int = 300
    idle_hold_s: float = 20.0
    settle_s: float = 6.0
    long_sizes: tuple[int, ...] = (10, 1_000, 10_000)  # messages of the long-conversation turns
    long_turns: int = 30


TINY = Sizes(
    ttft_requests=3,
    history=4,
    history_requests=2,
    chunks=50,
    concurrency=3,
    concurrent_chunks=10,
    cancels=2,
    big=200,
    paced_levels=(2, 4),
    paced_chunks=12,
    paced_ramp_s=0.3,
    idle_streams=4,
    idle_hold_s=3.0,
    settle_s=0.1,
    long_sizes=(10, 60, 120),
    long_turns=2,
)


async def _streaming(server: procs.Server, upstream: procs.Server, sizes: Sizes) -> dict[str, Any]:
    await procs.settle([server, upstream], at_least=sizes.settle_s)
    ttft, upstream_ttft, paired = await streams.first_token_beside(
        server, upstream, sizes.ttft_requests
    )
    result: dict[str, Any] = {}
    if server.kind == "parley":  # the relay keeps no conversation: its requests are the same
        convo = await streams.conversation(server, sizes.history)
        before = await streams.branch_length(server, convo)
        long, beside, long_paired = await streams.first_token_beside(
            server, upstream, sizes.history_requests, convo=convo
        )
        result["history_ttft"] = {
            "messages_before": before,
            "messages_after": await streams.branch_length(server, convo),
            "requests": sizes.history_requests,
            "ttft_s": long,
            "upstream_ttft_s": beside,
            "ttft_added_paired_s": long_paired,
        }
    return result | {
        "ttft_s": ttft,
        "upstream_ttft_s": upstream_ttft,
        "ttft_added_paired_s": paired,
        "one_stream": await streams.throughput(server, sizes.chunks),
        "concurrent": await streams.throughput(server, sizes.concurrent_chunks, sizes.concurrency),
        "cancel_s": await streams.cancel_latency(server, upstream, sizes.cancels),
    }


async def _ladder(server: procs.Server, sizes: Sizes) -> dict[str, Any]:
    return await paced.ladder(
        server, sizes.paced_levels, chunks=sizes.paced_chunks, ramp_s=sizes.paced_ramp_s
    )


async def _paced(server: procs.Server, sizes: Sizes) -> dict[str, Any]:
    """The paced ladder and the memory of open idle streams, each on a fresh process's heap."""
    return {
        "idle_memory": await paced.idle_memory(
            server, sizes.idle_streams, ramp_s=sizes.paced_ramp_s, hold_s=sizes.idle_hold_s
        ),
        "paced": await _ladder(server, sizes),
    }


@asynccontextmanager
async def _postgres_database(name: str) -> AsyncIterator[str]:
    """A new, empty PostgreSQL database beside the configured one; dropped afterwards."""
    admin = create_async_engine(POSTGRES_SERVER, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield POSTGRES_SERVER.rsplit("/", 1)[0] + "/" + name
    finally:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


async def _flush_redis() -> None:
    client = aioredis.from_url(REDIS)
    await client.flushdb()
    await client.aclose()


async def _servers(sizes: Sizes, workdir: Path, pg: bool, rd: bool) -> dict[str, Any]:
    r: dict[str, Any] = {}
    async with procs.upstream() as upstream:
        async with procs.relay(upstream.url, workdir) as relay:
            r["relay"] = await _paced(relay, sizes)
            r["relay"].update(await _streaming(relay, upstream, sizes))
        # the same relay on parley's HTTP client: a reference, not the targets' baseline
        async with procs.relay(upstream.url, workdir, client="aiohttp") as relay:
            r["relay_aiohttp"] = await _streaming(relay, upstream, sizes)
        async with procs.parley(upstream.url, workdir) as parley:
            r["parley"] = await _paced(parley, sizes)
            r["parley"].update(await _streaming(parley, upstream, sizes))
        if pg:
            async with (
                _postgres_database("parley_bench_pg") as url,
                procs.parley(upstream.url, workdir, url, name="parley-pg") as parley,
            ):
                r["parley_pg"] = await _streaming(parley, upstream, sizes)
        if pg and rd:
            for workers in (1, 2):
                await _flush_redis()
                async with (
                    _postgres_database(f"parley_bench_w{workers}") as url,
                    procs.parley(
                        upstream.url, workdir, url, redis_url=REDIS, workers=workers,
                        name=f"parley-w{workers}",
                    ) as parley,
                ):  # fmt: skip
                    r[f"parley_redis_w{workers}"] = {
                        "concurrent": await streams.throughput(
                            parley, sizes.concurrent_chunks, sizes.concurrency
                        ),
                        "paced": await _ladder(parley, sizes),
                    }
    return r


async def _databases(sizes: Sizes, workdir: Path, pg: bool) -> dict[str, Any]:
    r: dict[str, Any] = {}
    async with database.in_process(workdir) as (url, app, scripted):
        r["statements_sqlite"] = await database.statements_per_reply(url, app, scripted)
        r["big_sqlite"] = await database.big_reads(url, app, sizes.big)
    if pg:
        async with (
            _postgres_database("parley_bench_db") as pg_url,
            database.in_process(workdir, pg_url) as (url, app, scripted),
        ):
            r["statements_postgres"] = await database.statements_per_reply(url, app, scripted)
            r["big_postgres"] = await database.big_reads(url, app, sizes.big)
    return r


async def _long_turns(sizes: Sizes, workdir: Path, pg: bool) -> dict[str, Any]:
    """Time per turn at 10, 1,000 and 10,000 messages, beside the relay (bench/long.py)."""
    r: dict[str, Any] = {}
    many, turns = sizes.long_sizes, sizes.long_turns
    async with procs.upstream() as upstream:
        async with procs.relay(upstream.url, workdir) as relay:
            await procs.settle([relay, upstream], at_least=1.0)
            r["relay"] = (await long.turns_beside(relay, upstream, turns, {"relay": None}))["relay"]
        sqlite = f"sqlite+aiosqlite:///{workdir / 'long.db'}"
        r["sqlite"] = await long.on_parley(upstream, workdir, sqlite, many, turns)
        if pg:
            async with _postgres_database("parley_bench_long") as url:
                r["postgres"] = await long.on_parley(upstream, workdir, url, many, turns)
    return r


async def collect(
    sizes: Sizes, workdir: Path, *, postgres: bool = True, only: str | None = None
) -> dict[str, Any]:
    pg = postgres and _reachable(POSTGRES_SERVER)
    rd = _reachable(REDIS)
    results: dict[str, Any] = {}
    if only is None:
        results.update(await _servers(sizes, workdir, pg, rd))
        results.update(await _databases(sizes, workdir, pg))
    results["long_turns"] = await _long_turns(sizes, workdir, pg)
    results["skipped"] = [
        *(
            []
            if pg
            else ["PostgreSQL (not reachable, or --no-postgres): parley-pg, big reads, long turns"]
        ),
        *([] if (pg and rd) or only else ["PostgreSQL+Redis (not reachable): --workers 1 and 2"]),
    ]
    return results


def _reachable(url: str) -> bool:
    host, _, port = url.split("@")[-1].split("//")[-1].split("/")[0].partition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=0.5):
            return True
    except OSError:
        return False


def _added(server: dict[str, Any]) -> dict[str, float]:
    """Time to first token beyond the upstream's own, measured beside it (p50 and p99 of the
    server less the upstream's p50)."""
    base = server["upstream_ttft_s"]["p50"]
    return {pct: server["ttft_s"][pct] - base for pct in ("p50", "p99")}


def _ratio(a: float, b: float) -> float:
    return a / b if b else float("inf")


def targets(r: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The issues' targets, each with the measured value and whether it is met."""
    found = long.targets(r["long_turns"]) if "long_turns" in r else {}
    return (_stream_targets(r) if "parley" in r else {}) | found


def _stream_targets(r: dict[str, Any]) -> dict[str, dict[str, Any]]:
    p, q = r["parley"], r["relay"]
    added = {k: _added(r[k]) for k in ("parley", "relay")}
    ttft = {pct: _ratio(added["parley"][pct], added["relay"][pct]) for pct in ("p50", "p99")}
    cpu = _ratio(p["one_stream"]["cpu_us_per_event"], q["one_stream"]["cpu_us_per_event"])
    held = _ratio(p["paced"]["held"], q["paced"]["held"])
    mem_p, mem_q = p["idle_memory"]["kib_per_stream"], q["idle_memory"]["kib_per_stream"]
    out: dict[str, dict[str, Any]] = {
        "ttft_added_p50_le_2x_relay": {"value": ttft["p50"], "met": ttft["p50"] <= 2},
        "ttft_added_p99_le_2x_relay": {"value": ttft["p99"], "met": ttft["p99"] <= 2},
        "cpu_per_event_le_2x_relay": {"value": cpu, "met": cpu <= 2},
        "paced_streams_held_ge_60pct_relay": {
            "value": f"{p['paced']['held']} vs {q['paced']['held']}",
            "met": held >= 0.6,
        },
        "memory_per_stream_le_1_5x_relay": {
            "value": f"{mem_p:.0f} vs {mem_q:.0f} KiB, {p['idle_memory']['streams']} streams",
            "met": _ratio(mem_p, mem_q) <= 1.5,
        },
        "cancel_closes_upstream_le_1s": {
            "value": p["cancel_s"]["p99"],
            "met": p["cancel_s"]["p99"] <= 1,
        },
    }
    for db in ("sqlite", "postgres"):
        if f"statements_{db}" in r:
            s = r[f"statements_{db}"]
            out[f"constant_statements_per_reply_{db}"] = {
                "value": s,
                "met": s["tokens_500"] == s["tokens_5"],
            }
            opened = r[f"big_{db}"]["open_conversation"]["p50_ms"]
            out[f"open_10k_conversation_lt_100ms_{db}"] = {"value": opened, "met": opened < 100}
    return out


def _history_row(p: dict[str, Any]) -> list[tuple[str, float, float]]:
    """Parley's added first token in a conversation with history. The relay keeps no
    conversation, so it has no such figure (nan); the history also makes the model request
    bigger, which the upstream alone (measured with none) does not pay."""
    h = p.get("history_ttft")
    if h is None:
        return []
    added = (h["ttft_s"]["p50"] - h["upstream_ttft_s"]["p50"]) * 1e3
    first, last = h["messages_before"], h["messages_after"]
    return [(f"TTFT added p50, {first}-{last} messages (ms)", added, math.nan)]


def _rows(r: dict[str, Any]) -> list[tuple[str, float, float]]:
    p, q = r["parley"], r["relay"]
    pa, qa = _added(p), _added(q)
    pp, qp = p["ttft_added_paired_s"], q["ttft_added_paired_s"]
    ms = 1e3
    return [
        ("TTFT p50 (ms)", p["ttft_s"]["p50"] * ms, q["ttft_s"]["p50"] * ms),
        ("TTFT p99 (ms)", p["ttft_s"]["p99"] * ms, q["ttft_s"]["p99"] * ms),
        ("TTFT added p50 (ms)", pa["p50"] * ms, qa["p50"] * ms),
        ("TTFT added p99 (ms)", pa["p99"] * ms, qa["p99"] * ms),
        ("upstream TTFT p50, beside (ms)", p["upstream_ttft_s"]["p50"] * ms, q["upstream_ttft_s"]["p50"] * ms),
        ("TTFT added p50, paired (ms)", pp["p50"] * ms, qp["p50"] * ms),
        *_history_row(p),
        ("1 stream events/s", p["one_stream"]["events_per_s"], q["one_stream"]["events_per_s"]),
        ("1 stream CPU us/event", p["one_stream"]["cpu_us_per_event"], q["one_stream"]["cpu_us_per_event"]),
        ("100 streams events/s", p["concurrent"]["events_per_s"], q["concurrent"]["events_per_s"]),
        ("100 streams CPU us/event", p["concurrent"]["cpu_us_per_event"], q["concurrent"]["cpu_us_per_event"]),
        ("cancel->upstream closed p50 (ms)", p["cancel_s"]["p50"] * ms, q["cancel_s"]["p50"] * ms),
        ("cancel->upstream closed p99 (ms)", p["cancel_s"]["p99"] * ms, q["cancel_s"]["p99"] * ms),
        ("paced streams held (p99 gap<100ms)", p["paced"]["held"], q["paced"]["held"]),
        ("KiB per open idle stream", p["idle_memory"]["kib_per_stream"], q["idle_memory"]["kib_per_stream"]),
        ("KiB per stream, first group", p["idle_memory"]["kib_per_stream_first"], q["idle_memory"]["kib_per_stream_first"]),
    ]  # fmt: skip


def _paced_lines(r: dict[str, Any]) -> list[str]:
    lines = [
        "paced streams, one chunk every 50 ms (streams: p99 gap ms / errors / KiB per stream):"
    ]
    for key in ("relay", "parley", "parley_redis_w1", "parley_redis_w2"):
        if key in r:
            cells = [
                f"{lv['streams']}: {lv['p99_gap_ms']:.0f}/{lv['p99_gap_all_ms']:.0f}"
                f"/{lv['errors']}/{lv['rss_per_stream_kib']:.0f}"
                for lv in r[key]["paced"]["levels"]
            ]
            lines.append(f"  {key:16} held {r[key]['paced']['held']:5}   " + "  ".join(cells))
    return lines


def _reference_lines(r: dict[str, Any]) -> list[str]:
    """The relay on aiohttp, parley's own HTTP client for the model: what parley adds beyond
    what its client saves. A reference beside the baseline, not the targets' baseline."""
    a = r.get("relay_aiohttp")
    if a is None:
        return []
    p = r["parley"]
    added, paired = _added(a)["p50"], a["ttft_added_paired_s"]["p50"]
    cpu, cpu_100 = a["one_stream"]["cpu_us_per_event"], a["concurrent"]["cpu_us_per_event"]
    return [
        f"relay on aiohttp (reference): TTFT added p50 {added * 1e3:.2f} ms"
        f" (paired {paired * 1e3:.2f}), p99 {_added(a)['p99'] * 1e3:.2f} ms;"
        f" 1 stream {cpu:.1f} us/event; 100 streams {cpu_100:.1f} us/event",
        f"  parley/relay-on-aiohttp: TTFT added p50 {_ratio(_added(p)['p50'], added):.2f},"
        f" paired {_ratio(p['ttft_added_paired_s']['p50'], paired):.2f};"
        f" 1 stream CPU {_ratio(p['one_stream']['cpu_us_per_event'], cpu):.2f},"
        f" 100 streams CPU {_ratio(p['concurrent']['cpu_us_per_event'], cpu_100):.2f}",
    ]


def table(r: dict[str, Any]) -> str:
    lines = _stream_lines(r) if "parley" in r else []
    if "long_turns" in r:
        lines.extend(long.lines(r["long_turns"]))
    for skipped in r["skipped"]:
        lines.append(f"SKIPPED: {skipped}")
    for name, t in r["targets"].items():
        lines.append(f"target {name:40} {'MET' if t['met'] else 'MISSED'}  ({t['value']})")
    return "\n".join(lines)


def _stream_lines(r: dict[str, Any]) -> list[str]:
    lines = [f"{'scenario':36} {'parley':>10} {'relay':>10} {'parley/relay':>13}"]
    for name, a, b in _rows(r):
        lines.append(f"{name:36} {a:10.2f} {b:10.2f} {_ratio(a, b):13.2f}")
    lines.append(
        f"100 streams errors: parley={r['parley']['concurrent']['errors']}"
        f" relay={r['relay']['concurrent']['errors']}"
    )
    if "parley_pg" in r:
        g = r["parley_pg"]
        lines.append(
            f"parley on PostgreSQL: TTFT p50 {g['ttft_s']['p50'] * 1e3:.2f} ms,"
            f" p99 {g['ttft_s']['p99'] * 1e3:.2f} ms;"
            f" 1 stream {g['one_stream']['cpu_us_per_event']:.1f} us/event;"
            f" 100 streams {g['concurrent']['events_per_s']:.0f} events/s,"
            f" {g['concurrent']['errors']} errors"
        )
    for key in ("parley_redis_w1", "parley_redis_w2"):
        if key in r:
            c = r[key]["concurrent"]
            lines.append(
                f"{key} (PostgreSQL+Redis): 100 streams {c['events_per_s']:.0f} events/s,"
                f" {c['cpu_us_per_event']:.1f} us/event, {c['errors']} errors"
            )
    lines.extend(_reference_lines(r))
    lines.extend(_paced_lines(r))
    for db in ("sqlite", "postgres"):
        if f"big_{db}" in r:
            big = r[f"big_{db}"]
            lines.append(
                f"{db}: statements/commits per reply {r[f'statements_{db}']};"
                f" open {big['size']}-message conversation p50"
                f" {big['open_conversation']['p50_ms']:.1f} ms;"
                f" list of {big['size']} conversations p50"
                f" {big['list_conversations']['p50_ms']:.1f} ms"
            )
    return lines


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--tiny", action="store_true", help="a quick smoke run with tiny sizes")
    parser.add_argument("--out", type=Path, help="where to write the JSON results")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    parser.add_argument("--only", choices=["long"], help="one scenario: time per turn in long"
                        " conversations")  # fmt: skip
    args = parser.parse_args(argv)
    sizes = TINY if args.tiny else Sizes()
    configure(json_logs=False, level="WARNING")  # the in-process parley: no line per request
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    with tempfile.TemporaryDirectory(prefix="parley-bench-") as tmp:
        results = asyncio.run(
            collect(sizes, Path(tmp), postgres=not args.no_postgres, only=args.only)
        )
    results["targets"] = targets(results)
    results["machine"] = {**_machine(), "started_utc": started}
    results["sizes"] = asdict(sizes)
    out = args.out or Path(__file__).parent / "results" / time.strftime(
        "%Y%m%dT%H%M%SZ.json", time.gmtime()
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str))
    print(table(results))
    print(f"results: {out}")
    return results


def _machine() -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    names = [
        line.split(":", 1)[1].strip()
        for line in cpuinfo.splitlines()
        if line.startswith("model name")
    ]
    return {
        "nproc": os.cpu_count(),
        "cpu": names[0] if names else platform.processor(),
        "python": platform.python_version(),
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


if __name__ == "__main__":
    main()
